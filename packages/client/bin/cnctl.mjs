#!/usr/bin/env node
// `npx cnctl` from the repository root: the CLI is TypeScript, loaded through tsx (installed by `npm ci`).
import { register } from "tsx/esm/api";

register();
const { main } = await import("../src/cli.ts");
process.exitCode = await main(process.argv.slice(2));
