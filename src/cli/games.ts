#!/usr/bin/env node
// `games run`: the rendezvous server (REST + STUN) with the settings named by GAMES_SETTINGS.
// `games host …` / `games guest …` (the peers) will plug in here as further verbs.
import { startGames } from '../games/server.js';
import { gamesSettingsSchema } from '../settings/games-schema.js';
import { loadSettings } from '../settings/load.js';
import { runProcess, usage } from './run-process.js';

const [verb, ...rest] = process.argv.slice(2);
if (verb !== 'run' || rest.length > 0) {
  usage(`usage: GAMES_SETTINGS=settings/dev/roles/games-1 games run

  Runs the game rendezvous: REST on http.port, STUN on stun.port/udp. GAMES_SETTINGS names one
  or more role folders (colon-separated); NATS_URL overrides nats.url.`);
}
await runProcess('games', async (log) => {
  const settings = loadSettings(['GAMES_SETTINGS'], gamesSettingsSchema);
  return startGames(settings, log.child({ games: settings.name }));
});
