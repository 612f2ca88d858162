#!/usr/bin/env node
// Builds the proxy's zero-copy splice addon (native/splice/) with node-gyp, offline: Node's
// headers come from the system (npm's nodedir) and node-gyp is the one npm bundles. Run by the
// root package's `install` script, so `npm ci` builds it. It never fails the install: without a
// compiler, headers or Linux, it prints one line and the proxy relays with its JS splicer.
//
//   node scripts/build-native.mjs          (skips when the addon is newer than its sources)
import { execFileSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const dir = join(root, 'native', 'splice');
const addon = join(dir, 'build', 'Release', 'eps_splice.node');
const sources = ['splice.c', 'binding.gyp'].map((f) => join(dir, f));

const skip = (why) => {
  console.log(`native splice: not built (${why}); the proxy relays with its JS splicer`);
  process.exit(0);
};

/** npm passes its bundled node-gyp to lifecycle scripts; outside one, find npm's own copy. */
function nodeGyp() {
  const fromNpm = process.env.npm_config_node_gyp;
  if (fromNpm && existsSync(fromNpm)) return fromNpm;
  try {
    const npmCli = execFileSync('npm', ['root', '-g'], { encoding: 'utf8' }).trim();
    const bundled = join(npmCli, 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js');
    if (existsSync(bundled)) return bundled;
  } catch {
    // No npm on the PATH: try a node-gyp installed as a package.
  }
  try {
    return createRequire(import.meta.url).resolve('node-gyp/bin/node-gyp.js');
  } catch {
    return undefined;
  }
}

if (process.platform !== 'linux') skip(`splice(2) is Linux only, this is ${process.platform}`);
if (process.env.EPS_NATIVE_SPLICE === 'off') skip('EPS_NATIVE_SPLICE=off');
const newest = Math.max(...sources.map((f) => statSync(f).mtimeMs));
if (existsSync(addon) && statSync(addon).mtimeMs >= newest) process.exit(0);
const gyp = nodeGyp();
if (!gyp) skip('node-gyp not found');
try {
  // nodedir: the headers that came with this Node (Debian: /usr/include/node), no download.
  const nodedir = process.env.npm_config_nodedir || (existsSync('/usr/include/node/node_api.h') ? '/usr' : undefined);
  const args = [gyp, 'rebuild', '--loglevel=error', ...(nodedir ? [`--nodedir=${nodedir}`] : [])];
  execFileSync(process.execPath, args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  console.log('native splice: built native/splice/build/Release/eps_splice.node');
} catch (err) {
  const detail = String(err.stderr ?? err.message).trim().split('\n').filter(Boolean).slice(-1)[0] ?? 'unknown error';
  skip(`node-gyp failed: ${detail}`);
}
