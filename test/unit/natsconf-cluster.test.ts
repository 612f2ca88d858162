import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { clusterNodes, clusterUrls, writeClusterConfigs } from '../../src/natsconf/cluster.js';
import { generateNatsConfig } from '../../src/natsconf/generate.js';

const layout = { size: 3, hosts: ['127.0.0.1'], clientPort: 4341, routePort: 6241, storeRoot: '/store', outDir: '/out' };

describe('nats config cluster', () => {
  it('nats config cluster - on one host the nodes count their ports up; on N hosts each node keeps the same ports', () => {
    const one = clusterNodes(layout);
    expect(one.map((n) => [n.name, n.host, n.clientPort, n.routePort, n.storeDir, n.file])).toEqual([
      ['eps-1', '127.0.0.1', 4341, 6241, '/store/eps-1', '/out/eps-1.conf'],
      ['eps-2', '127.0.0.1', 4342, 6242, '/store/eps-2', '/out/eps-2.conf'],
      ['eps-3', '127.0.0.1', 4343, 6243, '/store/eps-3', '/out/eps-3.conf'],
    ]);
    expect(clusterUrls(one)).toEqual(['nats://127.0.0.1:4341', 'nats://127.0.0.1:4342', 'nats://127.0.0.1:4343']);
    const many = clusterNodes({ ...layout, size: 5, hosts: ['10.0.0.1', '10.0.0.2', '10.0.0.3', '10.0.0.4', '10.0.0.5'], clientPort: 4222, routePort: 6222 });
    expect(many.map((n) => `${n.host}:${n.clientPort}/${n.routePort}`)).toEqual(['10.0.0.1:4222/6222', '10.0.0.2:4222/6222', '10.0.0.3:4222/6222', '10.0.0.4:4222/6222', '10.0.0.5:4222/6222']);
  });

  it('nats config cluster - a host list that is neither one host nor one per node, or no node at all, is refused', () => {
    expect(() => clusterNodes({ ...layout, hosts: ['a', 'b'] })).toThrow('2 hosts for 3 nodes');
    expect(() => clusterNodes({ ...layout, size: 0 })).toThrow('at least one node');
  });

  it('nats config cluster - each node routes to every other one over mutual TLS that admits the route certificate only, with the single server\'s users and rights', () => {
    const dir = mkdtempSync(join(tmpdir(), 'eps-cluster-conf-'));
    try {
      const { nodes } = writeClusterConfigs({ ...layout, storeRoot: join(dir, 'store'), outDir: dir }, { settings: 'settings/dev' });
      const single = generateNatsConfig({ settings: 'settings/dev', host: '127.0.0.1', port: 4341, storeDir: join(dir, 'store', 'eps-1') }).text;
      const first = readFileSync(nodes[0]!.file, 'utf8');
      expect(first).toContain('server_name: "eps-1"');
      const block = /\ncluster \{\n([\s\S]*?)\n\}\n/.exec(first)![1]!;
      expect(block).toContain('name: "eps"');
      expect(block).toContain('listen: "127.0.0.1:6241"');
      expect(block).toMatch(/tls \{[^}]*cert_file: "[^"]*\/nats-route\.crt"[^}]*verify_and_map: true/);
      expect(block).toContain('authorization { user: "nats-route" }');
      expect(block).toContain('"nats-route://127.0.0.1:6242"');
      expect(block).toContain('"nats-route://127.0.0.1:6243"');
      expect(block).not.toContain('nats-route://127.0.0.1:6241');
      // Everything but the cluster's lines is the single server's configuration.
      const withoutCluster = first.replace(/server_name: .*\n# A node of a cluster.*\ncluster \{\n[\s\S]*?\n\}\n/, '');
      expect(withoutCluster).toBe(single);
      expect(readFileSync(nodes[2]!.file, 'utf8')).toContain('server_name: "eps-3"');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
