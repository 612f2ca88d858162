/** The subject the sd publishes accepted records on; the stream captures exactly this subject. */
export const SD_RECORDS_SUBJECT = 'eps.sd.records';
/** Same default as `sdSettingsSchema.stream`: clients have no sd settings to read it from. */
export const DEFAULT_SD_STREAM = 'EPS_SD_RECORDS';
