// The files of each language: the program (`code` in the exec request), its dependency
// file, and any extra files (sent as `files`). Saved in localStorage.

export type Language = "python" | "javascript" | "typescript";
export const LANGUAGES: { id: Language; label: string }[] = [
  { id: "python", label: "Python" },
  { id: "javascript", label: "JavaScript" },
  { id: "typescript", label: "TypeScript" },
];

export const PROGRAM: Record<Language, string> = {
  python: "main.py",
  javascript: "main.js",
  typescript: "main.ts",
};
export const DEPS: Record<Language, string> = {
  python: "requirements.txt",
  javascript: "package.json",
  typescript: "package.json",
};
export const DEPS_HINT: Record<Language, string> = {
  python: "# One requirement per line, e.g.\n# requests==2.32.3\n# Leave empty to skip the install step.",
  javascript: '{\n  "dependencies": { "lodash": "^4.17.21" }\n}\n\nLeave empty to skip the install step.',
  typescript: '{\n  "dependencies": { "lodash": "^4.17.21" }\n}\n\nLeave empty to skip the install step.',
};

const SAMPLES: Record<Language, string> = {
  python: `# Sandstream playground: edit, then Run (Ctrl/Cmd+Enter).
# Dependencies go in requirements.txt; more files with "+".
import sys
import time

for i in range(1, 6):
    print(f"step {i}/5")
    time.sleep(0.2)

print("\\x1b[32mcolours work\\x1b[0m, and so does stderr:")
print("this line went to stderr", file=sys.stderr)
print("done")
`,
  javascript: `// Sandstream playground: edit, then Run (Ctrl/Cmd+Enter).
// Dependencies go in package.json; more files with "+".
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

(async () => {
  for (let i = 1; i <= 5; i++) {
    console.log(\`step \${i}/5\`);
    await sleep(200);
  }
  console.log("\\x1b[32mcolours work\\x1b[0m, and so does stderr:");
  console.error("this line went to stderr");
  console.log("done");
})();
`,
  typescript: `// Sandstream playground: edit, then Run (Ctrl/Cmd+Enter).
interface Point {
  x: number;
  y: number;
}

const dist = (a: Point, b: Point): number => Math.hypot(a.x - b.x, a.y - b.y);

const points: Point[] = [
  { x: 0, y: 0 },
  { x: 3, y: 4 },
];
console.log(\`distance: \${dist(points[0], points[1])}\`);
console.error("this line went to stderr");
`,
};

export interface FileEntry {
  name: string;
  content: string;
}

export interface Workspace {
  language: Language;
  /** [program, dependency file, ...extra files] */
  files: FileEntry[];
  /** Given to the program on standard input; not a file. */
  stdin?: string;
}

export function defaultWorkspace(language: Language): Workspace {
  return {
    language,
    files: [
      { name: PROGRAM[language], content: SAMPLES[language] },
      { name: DEPS[language], content: "" },
    ],
  };
}

const KEY = "sandstream.workspaces.v1";

export function loadWorkspaces(): Record<Language, Workspace> {
  const out = {
    python: defaultWorkspace("python"),
    javascript: defaultWorkspace("javascript"),
    typescript: defaultWorkspace("typescript"),
  };
  try {
    const saved = JSON.parse(localStorage.getItem(KEY) ?? "null");
    for (const l of Object.keys(out) as Language[]) {
      const w = saved?.[l];
      if (!w || !Array.isArray(w.files)) continue;
      const files: FileEntry[] = w.files.filter((f: any) => f && typeof f.name === "string" && typeof f.content === "string");
      if (files[0]?.name !== PROGRAM[l] || files[1]?.name !== DEPS[l]) continue;
      out[l] = { language: l, files, stdin: typeof w.stdin === "string" ? w.stdin : "" };
    }
  } catch {
    /* corrupt or unavailable storage: defaults */
  }
  return out;
}

export function saveWorkspaces(ws: Record<Language, Workspace>) {
  try {
    localStorage.setItem(KEY, JSON.stringify(ws));
  } catch {
    /* storage full or disabled */
  }
}

/** Why a new file name is refused, or null when it is fine. */
export function badFileName(name: string, existing: string[]): string | null {
  if (!name) return "Give the file a name.";
  if (name.length > 200) return "That name is too long.";
  if (name.startsWith("/") || name.split("/").some((p) => p === ".." || p === "." || p === "")) return "Use a relative path such as data.csv or lib/util.py.";
  if (!/^[A-Za-z0-9._\-/]+$/.test(name)) return "Use only letters, digits, '.', '_', '-' and '/' in file names.";
  if (name.startsWith(".sandstream")) return "Names starting with .sandstream are reserved.";
  if (existing.includes(name)) return `There is already a file named ${name}.`;
  return null;
}
