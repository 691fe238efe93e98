/**
 * Runs the ModelsLab simulator on its own: `tsx local/simulator/main.ts`.
 * Environment: PORT (default 4010; 0 picks one), HOST (default 127.0.0.1), SIMULATOR_API_KEY
 * (default "sim-key"), SIMULATOR_COMPLETION_DELAY_MS (default 2000), SIMULATOR_CONCURRENCY_LIMIT (5).
 */
import { startSimulator } from "./server.ts";

const int = (value: string | undefined, fallback: number): number => {
  const n = Number(value);
  return value !== undefined && value !== "" && Number.isInteger(n) && n >= 0 ? n : fallback;
};

const simulator = await startSimulator({
  port: int(process.env.PORT, 4010),
  host: process.env.HOST || "127.0.0.1",
  apiKey: process.env.SIMULATOR_API_KEY || "sim-key",
  completionDelayMs: int(process.env.SIMULATOR_COMPLETION_DELAY_MS, 2_000),
  concurrencyLimit: int(process.env.SIMULATOR_CONCURRENCY_LIMIT, 5),
});
console.log(
  `ModelsLab simulator listening: ${simulator.url} (key: ${process.env.SIMULATOR_API_KEY ? "from SIMULATOR_API_KEY" : "sim-key"})`,
);

const shutdown = () => {
  void simulator.stop().then(() => process.exit(0));
};
process.once("SIGINT", shutdown);
process.once("SIGTERM", shutdown);
