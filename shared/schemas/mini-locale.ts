/**
 * Imported for its effect by every module built on zod/mini. Classic zod sets English messages when its
 * first schema is built; zod/mini sets no locale ("Invalid input" for everything), so do as classic
 * does: English unless something already chose a locale.
 */
import { en } from "zod/locales";
import * as z from "zod/mini";

if (!z.config().localeError) z.config(en());
