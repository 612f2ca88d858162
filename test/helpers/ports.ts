// The tests pick their ports as the chaos run does (src/devstack/free-port.ts).
export { distinctFreePorts, freePort } from '../../src/devstack/free-port.js';
