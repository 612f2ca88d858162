import { describe, expect, it } from 'vitest';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import { loadSettings, readRoleFolders, SettingsError } from '../../src/settings/load.js';
import { epsSettingsSchema, natsUrl } from '../../src/settings/schemas.js';

function folder(files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'eps-settings-'));
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  return dir;
}

describe('settings', () => {
  it('settings - deep-merges every yml of every folder, later values winning', () => {
    const base = folder({ '000_base.yml': 'a: {x: 1, y: [1, 2]}\nb: base\n', '010_more.yml': 'a: {z: 3}\n' });
    const role = folder({ 'role.yml': 'a: {x: 9, y: [7]}\n' });
    const { tree } = readRoleFolders([base, role]);
    expect(tree).toEqual({ a: { x: 9, y: [7], z: 3 }, b: 'base' });
  });

  it('settings - expands $DIR to the folder of the file that names it', () => {
    const dir = folder({ 's.yml': 'cert: $DIR/../certs/x.crt\n' });
    expect(readRoleFolders([dir]).tree.cert).toBe(`${dir}/../certs/x.crt`);
  });

  it('settings - an error names the file, the key and what was expected', () => {
    const dir = folder({ 'bad.yml': 'name: 42\n' });
    const schema = z.strictObject({ name: z.string() });
    expect(() => loadSettings(['X_SETTINGS'], schema, { X_SETTINGS: dir })).toThrowError(
      new RegExp(`${dir}/bad.yml: name: .*expected string`),
    );
  });

  it('settings - unknown keys are refused, with their file', () => {
    const dir = folder({ 'typo.yml': 'name: a\nnmae: b\n' });
    const schema = z.strictObject({ name: z.string() });
    expect(() => loadSettings(['X_SETTINGS'], schema, { X_SETTINGS: dir })).toThrowError(/typo\.yml.*nmae/s);
  });

  it('settings - a missing variable says which variables to set', () => {
    expect(() => loadSettings(['EPS_SETTINGS', 'HYPER_SETTINGS'], z.object({}), {})).toThrowError(
      /set EPS_SETTINGS or HYPER_SETTINGS/,
    );
  });

  it('settings - HYPER_SETTINGS is read when EPS_SETTINGS is unset', () => {
    const dir = folder({ 's.yml': 'name: hyper-a\n' });
    const s = loadSettings(['EPS_SETTINGS', 'HYPER_SETTINGS'], z.object({ name: z.string() }), { HYPER_SETTINGS: dir });
    expect(s.name).toBe('hyper-a');
  });

  it('settings - a folder that does not exist is a clear error', () => {
    expect(() => readRoleFolders(['/nonexistent/role'])).toThrowError(SettingsError);
  });

  it('settings - NATS_URL overrides the settings, which override the default', () => {
    const dir = folder({ 's.yml': 'name: a\ntls: {ca: c, cert: c, key: k}\ndirectory: {url: "https://127.0.0.1:3322/jsonrpc"}\n' });
    const s = loadSettings(['EPS_SETTINGS'], epsSettingsSchema, { EPS_SETTINGS: dir });
    expect(natsUrl(s, {})).toBe('nats://127.0.0.1:4333');
    expect(natsUrl(s, { NATS_URL: 'nats://127.0.0.1:1' })).toBe('nats://127.0.0.1:1');
  });

  it('settings - an EPS server dials its proxy early unless warmDials is false, and nothing else is taken for it', () => {
    const base = 'name: a\ntls: {ca: c, cert: c, key: k}\ndirectory: {url: "https://127.0.0.1:3322/jsonrpc"}\n';
    const load = (extra: string) => loadSettings(['EPS_SETTINGS'], epsSettingsSchema, { EPS_SETTINGS: folder({ 's.yml': base + extra }) });
    expect(load('').warmDials).toBe(true);
    expect(load('warmDials: false\n').warmDials).toBe(false);
    expect(() => load('warmDials: "no"\n')).toThrowError(/warmDials: .*expected boolean/);
  });

});
