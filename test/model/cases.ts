import type { AnyStateMachine } from 'xstate';
import { deriveModel, generatePaths, type DerivedModel, type ModelPath, type ModelStep } from './derive.js';
import type { Trace } from './harness.js';

// How a generated path becomes runnable cases: each abstract event has a driver that makes the
// real system produce it. A driver may say that, from some states, the I/O layer can never
// produce its event (`cannot`), or that src stops the stimulus before the machine sees it
// (`intercepted`); both need a reason, and both keep the transition from counting as covered.

export interface DriverStep<C> {
  /** Runs for every step of the case before it starts: configures the environment. */
  arrange?: (ctx: C, step: ModelStep) => void;
  /** Makes the event happen. Without a `ready` phase the first exec starts in the case's own tick. */
  exec?: (ctx: C, step: ModelStep) => void | Promise<void>;
  /** What each party observes once the real machine took the step. */
  check?: (ctx: C, step: ModelStep) => void | Promise<void>;
}

export interface Driver<C> extends DriverStep<C> {
  /** Ways to produce the same event; a path's last step runs once per variant. */
  variants?: Record<string, DriverStep<C>>;
  cannot?: Record<string, string>;
  intercepted?: Record<string, string>;
  /**
   * From these states the machine's own context rules this abstract edge out (typically an
   * eventless choice folded into it whose guard cannot hold there): the edge is left out of the
   * model, so no path is generated through it. Each needs a reason, like `cannot`.
   */
  never?: Record<string, string>;
}

export type Drivers<C> = Record<string, Driver<C>>;

export interface ModelCase {
  name: string;
  path: ModelPath;
  /** Variant per step index (only where the driver has variants). */
  variants: (string | undefined)[];
  /** Why the case cannot run, when it cannot. */
  skip?: string;
  /** Steps src stops before the machine: they run, but cover nothing. */
  intercepted: Set<number>;
}

export interface MachineModel<C = any> {
  machine: AnyStateMachine;
  model: DerivedModel;
  drivers: Drivers<C>;
  cases: ModelCase[];
}

export function buildModel<C>(machine: AnyStateMachine, drivers: Drivers<C>, scenarios: Record<string, string[]> = {}): MachineModel<C> {
  const never = new Set(Object.entries(drivers).flatMap(([event, d]) => Object.keys(d.never ?? {}).map((from) => `${from}|${event}`)));
  const model = deriveModel(machine, never);
  const cases: ModelCase[] = [];
  for (const path of generatePaths(model, scenarios)) {
    const intercepted = new Set<number>();
    let skip: string | undefined;
    path.steps.forEach((step, i) => {
      const d = drivers[step.event];
      if (!d) skip ??= `no driver for ${step.event}`;
      else if (d.cannot?.[step.from]) skip ??= `${step.event} from ${step.from}: ${d.cannot[step.from]}`;
      else if (d.intercepted?.[step.from]) intercepted.add(i);
    });
    const last = path.steps.length - 1;
    const lastVariants = Object.keys(drivers[path.steps[last]!.event]?.variants ?? {});
    const firstVariant = (i: number) => Object.keys(drivers[path.steps[i]!.event]?.variants ?? {})[0];
    for (const v of lastVariants.length ? lastVariants : [undefined]) {
      const variants = path.steps.map((_, i) => (i === last ? v : firstVariant(i)));
      cases.push({ name: `${path.name}${v ? ` [${v}]` : ''}`, path, variants, intercepted, ...(skip ? { skip } : {}) });
    }
  }
  return { machine, model, drivers, cases };
}

/** Steps that runnable cases make the real machine take: what coverage is computed from. */
export function coveredSteps(m: MachineModel): ModelStep[] {
  return m.cases.filter((c) => !c.skip).flatMap((c) => c.path.steps.filter((_, i) => !c.intercepted.has(i)));
}

/** Drives one case: arrange, set up, start, then per step make it happen and check the machine took it. */
export async function runCase<C extends { trace: Trace }>(
  m: MachineModel<C>,
  c: ModelCase,
  ctx: C,
  phases: { setup: (ctx: C) => Promise<void>; start: (ctx: C) => void; ready?: (ctx: C) => Promise<void> | undefined },
): Promise<void> {
  if (c.skip) throw new Error(c.skip);
  const parts = c.path.steps.map((step, i) => {
    const d = m.drivers[step.event]!;
    const v = c.variants[i];
    return { step, d: { ...d, ...(v ? d.variants![v] : {}) } as DriverStep<C>, intercepted: c.intercepted.has(i) };
  });
  for (const { step, d } of parts) d.arrange?.(ctx, step);
  await phases.setup(ctx);
  phases.start(ctx);
  // Only a real ready phase may yield: without one the first exec must run in this very tick.
  const ready = phases.ready?.(ctx);
  if (ready) await ready;
  for (const { step, d, intercepted } of parts) {
    await d.exec?.(ctx, step);
    if (intercepted) await ctx.trace.expectNothing();
    // An eventless first step is the machine settling as it starts.
    else await ctx.trace.expect(step.real.eventType || 'xstate.init', step.to);
    await d.check?.(ctx, step);
  }
}
