// The buckets of one games store, named from the one `games.bucket` setting, so the bus policy
// (src/natsconf/policy.ts) grants exactly these and the store opens exactly these.

/** The index of games in registration order (src/games/lobby.ts). */
export const lobbyBucket = (bucket: string) => `${bucket}_LOBBY`;
/** Counters shared by every instance, aging out (src/games/shared-limits.ts). */
export const limitsBucket = (bucket: string) => `${bucket}_LIMITS`;
/** Every bucket a games store with this name uses. */
export const gamesBuckets = (bucket: string) => [bucket, lobbyBucket(bucket), limitsBucket(bucket)];
