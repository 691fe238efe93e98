/** Types of poll.js, for the tests that drive it from TypeScript (the browser needs none). */
export type PollState = "waiting" | "running" | "paused" | "stopped";

export interface PollerOptions {
  run: () => Promise<boolean>;
  minMs?: number;
  maxMs?: number;
  factor?: number;
  /** The page's document (default): what says whether the tab is hidden, and when that changes. */
  doc?: {
    readonly hidden: boolean;
    addEventListener(type: "visibilitychange", listener: () => void): void;
    removeEventListener(type: "visibilitychange", listener: () => void): void;
  };
  onState?: (state: PollState, delayMs: number) => void;
}

export interface Poller {
  poke(): void;
  stop(): void;
  readonly delay: number;
}

export function createPoller(options: PollerOptions): Poller;
