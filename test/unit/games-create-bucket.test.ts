import { describe, expect, it } from 'vitest';
import { JetStreamApiError } from '@nats-io/jetstream';
import { isPassingBucketFailure } from '../../src/games/create-bucket.js';

describe('bucket creation (pure)', () => {
  it('games buckets - a timeout or an unplaced stream is asked again; JetStream off, a refusal or a different configuration is not', () => {
    const timeout = new Error('timeout');
    timeout.name = 'TimeoutError';
    expect(isPassingBucketFailure(timeout)).toBe(true);
    expect(isPassingBucketFailure(new JetStreamApiError({ code: 503, err_code: 10008, description: 'JetStream system temporarily unavailable' }))).toBe(true);
    expect(isPassingBucketFailure(new JetStreamApiError({ code: 500, err_code: 10005, description: 'no suitable peers for placement' }))).toBe(true);
    const off = new Error('jetstream is not enabled');
    off.name = 'JetStreamNotEnabled';
    expect(isPassingBucketFailure(off)).toBe(false);
    expect(isPassingBucketFailure(new JetStreamApiError({ code: 400, err_code: 10058, description: 'stream name already in use with a different configuration' }))).toBe(false);
    expect(isPassingBucketFailure(new Error("Permissions Violation for Publish to \"$JS.API.STREAM.CREATE.KV_x\""))).toBe(false);
  });
});
