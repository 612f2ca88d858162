import { ForeignSubject, UnparsableRecord } from './damage.js';
import { SD_RECORDS_SUBJECT } from './stream-names.js';

/**
 * What a reader makes of a message stored in the directory stream, before any signature check:
 * the parsed record, or a marker that applyStored reports as damage. A message on another subject
 * got there by some other way than the sd's appends (a stream widened, a consumer delivering into
 * it): it is never a record, and every reader (sd, clients, `sd repair`) stops at it the same way.
 */
export function parseStoredRecord(subject: string, data: Uint8Array): unknown {
  const text = Buffer.from(data).toString('utf8');
  if (subject !== SD_RECORDS_SUBJECT) return new ForeignSubject(subject, text.slice(0, 200));
  try {
    return JSON.parse(text);
  } catch {
    return new UnparsableRecord(text.slice(0, 200));
  }
}
