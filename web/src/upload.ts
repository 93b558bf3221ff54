// Files dropped on the file tree (or picked with its Upload button), with their paths
// relative to the directory they go to: a dropped folder brings its files along.

/** At most this many files per drop: a folder such as node_modules is not for dropping. */
export const MAX_UPLOAD_FILES = 1000;

export interface Upload {
  file: File;
  /** Relative path under the target directory ("a.txt", "folder/sub/b.txt"). */
  rel: string;
}

/** What a drop carries, read synchronously (a DataTransfer is empty once its event is
 * over); `collect` then walks any folders among it. */
export interface Dropped {
  files: File[];
  entries: (FileSystemEntry | null)[];
}

export function dropped(dt: DataTransfer): Dropped {
  const entries = [...dt.items].filter((i) => i.kind === "file").map((i) => (typeof i.webkitGetAsEntry === "function" ? i.webkitGetAsEntry() : null));
  return { files: [...dt.files], entries };
}

/** The files to upload; `truncated` when there were more than MAX_UPLOAD_FILES. */
export async function collect(d: Dropped): Promise<{ uploads: Upload[]; truncated: boolean }> {
  // Only a folder needs the entries API; plain files (and synthetic drops, whose items
  // may have no entry) come from `files`.
  if (!d.entries.some((e) => e?.isDirectory)) {
    return { uploads: d.files.slice(0, MAX_UPLOAD_FILES).map((file) => ({ file, rel: file.name })), truncated: d.files.length > MAX_UPLOAD_FILES };
  }
  const out: Upload[] = [];
  let truncated = false;
  const walk = async (entry: FileSystemEntry, prefix: string): Promise<void> => {
    if (out.length >= MAX_UPLOAD_FILES) {
      truncated = true;
      return;
    }
    if (entry.isFile) {
      const file = await new Promise<File>((resolve, reject) => (entry as FileSystemFileEntry).file(resolve, reject));
      out.push({ file, rel: prefix + entry.name });
    } else if (entry.isDirectory) {
      const reader = (entry as FileSystemDirectoryEntry).createReader();
      for (;;) {
        const batch = await new Promise<FileSystemEntry[]>((resolve, reject) => reader.readEntries(resolve, reject));
        if (!batch.length) break;
        for (const child of batch) await walk(child, `${prefix}${entry.name}/`);
      }
    }
  };
  for (const e of d.entries) if (e) await walk(e, "");
  return { uploads: out, truncated };
}
