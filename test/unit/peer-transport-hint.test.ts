import { describe, expect, it } from 'vitest';
import { setUpFailureHint } from '../../src/grpc/peer-transport.js';

// The hint a failed TLS/HTTP2 set-up carries goes by how it broke (a chaos run found the old one,
// "did it refuse our certificate", wrong when the proxy splicing the call had died).

describe('set-up failure hint', () => {
  it('peer transport - a reset or a close names the path going away; an alert names a refusal; else the protocol', () => {
    const reset = Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' });
    expect(setUpFailureHint(reset)).toMatch(/proxy splicing us or the peer went away/);
    expect(setUpFailureHint(undefined)).toMatch(/went away/);
    expect(setUpFailureHint(new Error('Client network socket disconnected before secure TLS connection was established: socket closed'))).toMatch(/went away/);
    expect(setUpFailureHint(new Error('error:0A000412:SSL routines::sslv3 alert bad certificate'))).toBe('the peer refused our certificate (TLS alert)');
    expect(setUpFailureHint(new Error('wrong version number'))).toBe('is the other end a peer server?');
  });
});
