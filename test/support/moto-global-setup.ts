/**
 * vitest globalSetup of `npm run test:moto` (vitest.moto.config.ts): one moto_server for the run.
 * The test processes find it through AWS_EMULATOR=moto and AWS_EMULATOR_ENDPOINT (see emulators.ts).
 */
import { startMoto } from "./moto.ts";

export default async function setup(): Promise<() => Promise<void>> {
  const moto = await startMoto();
  process.env.AWS_EMULATOR = "moto";
  process.env.AWS_EMULATOR_ENDPOINT = moto.endpoint;
  return () => moto.stop();
}
