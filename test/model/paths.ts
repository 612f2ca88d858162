import { brokeringMachine } from '../../machines/brokering.js';
import { callbackMachine } from '../../machines/callback.js';
import { gameSessionMachine } from '../../machines/game-session.js';
import { peerConnectionMachine } from '../../machines/peer-connection.js';
import { brokeringDrivers, brokeringScenarios } from './brokering.drivers.js';
import { callbackDrivers } from './callback.drivers.js';
import { buildModel, type MachineModel } from './cases.js';
import { gameSessionDrivers } from './game-session.drivers.js';
import { peerConnectionDrivers, peerConnectionScenarios } from './peer-connection.drivers.js';

// The one list of generated cases: the model tests run exactly these, and the coverage test
// measures exactly these, so what is counted as covered is what was driven.

export const MODELS: Record<string, MachineModel> = {
  [brokeringMachine.id]: buildModel(brokeringMachine, brokeringDrivers, brokeringScenarios),
  [peerConnectionMachine.id]: buildModel(peerConnectionMachine, peerConnectionDrivers, peerConnectionScenarios),
  [callbackMachine.id]: buildModel(callbackMachine, callbackDrivers),
  [gameSessionMachine.id]: buildModel(gameSessionMachine, gameSessionDrivers),
};
