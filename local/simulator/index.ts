export { addTextChunks, pngSize, pngTextChunks, SIMULATED_COMMENT } from "./image.ts";
export {
  DEFAULT_SIMULATOR_OPTIONS,
  type Simulator,
  type SimulatorOptions,
  type SimulatorStats,
  startSimulator,
} from "./server.ts";
