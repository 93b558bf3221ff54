// `prepare`, for one case: another project installs this folder from a checkout
// (`npm install <checkout>/sdk/typescript`). npm (10 and 11) then links the folder into the
// project and does not install the folder's dependencies, but runs this script in it.
// Node resolves the SDK's own imports (@grpc/grpc-js, @grpc/proto-loader) from the
// folder, so they are installed here: the runtime ones only, exactly as locked, with no
// install scripts. dist/ is committed, so nothing is built.
//
// Nothing to do in every other case: this folder's own `npm install`/`npm ci`, `npm pack`
// and `npm publish`, `npm install --install-links <folder>` (npm copies the package and
// installs its dependencies into the project), and a link whose dependencies are here.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, realpathSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const pkg = realpathSync(resolve(dirname(fileURLToPath(import.meta.url)), '..'));
const env = process.env;
const project = env.npm_config_local_prefix ? resolve(env.npm_config_local_prefix) : pkg;
const linkedInto = ['install', 'ci', 'update'].includes(env.npm_command ?? '') && realpathOr(project) !== pkg;
const deps = Object.keys(JSON.parse(readFileSync(join(pkg, 'package.json'), 'utf8')).dependencies ?? {});
const missing = deps.filter((d) => !existsSync(join(pkg, 'node_modules', d, 'package.json')));

if (!linkedInto || env.npm_config_install_links === 'true' || missing.length === 0) process.exit(0);

console.error(`@sandstream/sdk: linked from ${pkg}; installing its runtime dependencies there (${missing.join(', ')})`);
// The outer npm's settings for its own project (its prefix, --global, --omit, …) must not
// reach this install; only those that say where packages come from do.
const FETCH = /^npm_config_(cache|userconfig|globalconfig|registry|.+:registry|cafile|ca|cert|key|strict_ssl|proxy|https?_proxy|noproxy|offline|prefer_offline|prefer_online|fetch_.+)$/i;
const clean = Object.fromEntries(
  Object.entries(env).filter(([k]) => !/^npm_/i.test(k) || FETCH.test(k)),
);
const npm = env.npm_execpath && /\.[cm]?js$/.test(env.npm_execpath) ? [process.execPath, env.npm_execpath] : ['npm'];
const r = spawnSync(
  npm[0],
  [...npm.slice(1), 'ci', '--omit=dev', '--ignore-scripts', '--no-audit', '--no-fund', '--prefix', pkg],
  { cwd: pkg, env: clean, stdio: 'inherit', shell: npm[0] === 'npm' && process.platform === 'win32' },
);
process.exit(r.status ?? 1);

function realpathOr(p) {
  try {
    return realpathSync(p);
  } catch {
    return p;
  }
}
