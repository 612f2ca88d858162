import { afterAll, beforeAll, describe, it } from 'vitest';
import { TestNatsServer } from '../helpers/nats-server.js';
import type { MachineModel, ModelCase } from './cases.js';

/**
 * One vitest case per generated path of `model`, each with the URL of a nats-server that the
 * file owns. A path the I/O layer cannot drive is reported as skipped with its reason, so the
 * gap stays visible in every run.
 */
export function describeModelPaths(
  area: string,
  title: string,
  model: MachineModel,
  runPath: (c: ModelCase, natsUrl: string) => Promise<void>,
): void {
  describe(title, () => {
    let nats: TestNatsServer;
    beforeAll(async () => {
      nats = await TestNatsServer.start();
    });
    afterAll(async () => {
      await nats?.stop();
    });

    for (const c of model.cases) {
      if (c.skip) it.skip(`${area} - ${c.name} (not drivable: ${c.skip})`, () => {});
      else it(`${area} - ${c.name}`, () => runPath(c, nats.url));
    }
  });
}
