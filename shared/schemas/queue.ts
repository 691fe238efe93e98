import type * as z from "zod/mini";
import { InvalidMessageError } from "../domain/errors.ts";

/**
 * A queue, declared once by its name and the schema of its messages (`messages.ts`). Everything else
 * derives from the declaration: the message type of the producer port (`Queue<M>`), the SQS adapter
 * and the in-memory fake, which validate on send with this schema, and the Lambda consumer
 * (`shared/lambda/sqs-consumer.ts`), which validates on receive with it.
 */
export interface QueueDefinition<M> {
  /** For errors and logs. */
  readonly name: string;
  readonly schema: z.ZodMiniType<M>;
}

export type MessageOf<Q> = Q extends QueueDefinition<infer M> ? M : never;

export const defineQueue = <M>(name: string, schema: z.ZodMiniType<M>): QueueDefinition<M> => ({
  name,
  schema,
});

/** At most this many problems are named in an error, each cut to this many characters. */
const MAX_PROBLEMS = 10;
const MAX_PROBLEM_CHARS = 200;

function problems(issues: readonly { path: readonly PropertyKey[]; message: string }[]): string[] {
  const named = issues
    .slice(0, MAX_PROBLEMS)
    .map((issue) =>
      `${issue.path.map(String).join(".") || "(root)"}: ${issue.message}`.slice(0, MAX_PROBLEM_CHARS),
    );
  if (issues.length > MAX_PROBLEMS) named.push(`and ${issues.length - MAX_PROBLEMS} more`);
  return named;
}

/**
 * The body to send: the message as its schema parses it (unknown keys dropped), as JSON. A message
 * that fails its schema is a bug in the sender: InvalidMessageError, and nothing is sent.
 */
export function encodeMessage<M>(queue: QueueDefinition<M>, message: M): string {
  const result = queue.schema.safeParse(message);
  if (!result.success) throw new InvalidMessageError(queue.name, "send", problems(result.error.issues));
  return JSON.stringify(result.data);
}

/** A received body, parsed and validated; InvalidMessageError when it is not JSON or fails the schema. */
export function decodeMessage<M>(queue: QueueDefinition<M>, body: string): M {
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch {
    throw new InvalidMessageError(queue.name, "receive", ["(root): not JSON"]);
  }
  const result = queue.schema.safeParse(json);
  if (!result.success) throw new InvalidMessageError(queue.name, "receive", problems(result.error.issues));
  return result.data;
}
