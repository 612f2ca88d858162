import type { AnyStateMachine } from 'xstate';
import type { InspectorSettings } from '../settings/schemas.js';
import { InspectorHttp } from './http.js';
import { SessionLog } from './session-log.js';

export interface Inspector {
  log: SessionLog;
  http: InspectorHttp;
}

/** A process's inspector from its settings: the session log and the page that shows it. */
export function createInspector(settings: InspectorSettings, machine: AnyStateMachine, title: string): Inspector {
  const log = new SessionLog({ maxFinished: settings.maxFinished, maxTimeline: settings.maxTimeline });
  return { log, http: new InspectorHttp({ log, machines: [machine], title, allowRemote: settings.allowRemote }) };
}
