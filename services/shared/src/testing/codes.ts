/** Expecting a call to fail with a given gRPC / Connect status code. */
import assert from "node:assert/strict";
import { Code, ConnectError } from "@connectrpc/connect";

export interface CodeExpectation {
  /** Matched against the error's raw message (without the "[code]" prefix). */
  message?: RegExp;
  /** Names the call in the assertion messages ("an expired token"). */
  what?: string;
}

const expectation = (e: RegExp | CodeExpectation | undefined): CodeExpectation =>
  e instanceof RegExp ? { message: e } : (e ?? {});

function check(err: unknown, code: Code, { message, what }: CodeExpectation): ConnectError {
  const prefix = what ? `${what}: ` : "";
  assert.ok(err instanceof ConnectError, `${prefix}not a ConnectError: ${String(err)}`);
  assert.equal(Code[err.code], Code[code], `${prefix}${err.rawMessage}`);
  if (message) assert.match(err.rawMessage, message, what);
  return err;
}

/**
 * Awaits `call` and asserts that it fails with `code` (and a raw message
 * matching `expected`); answers the error.
 *
 *   await expectCode(client.pay(req), Code.FailedPrecondition, /already paid/);
 */
export async function expectCode(
  call: Promise<unknown>,
  code: Code,
  expected?: RegExp | CodeExpectation,
): Promise<ConnectError> {
  const e = expectation(expected);
  try {
    await call;
  } catch (err) {
    return check(err, code, e);
  }
  assert.fail(`${e.what ? `${e.what}: ` : ""}expected ${Code[code]}, but the call succeeded`);
}

/**
 * The same check as a validation function for assert.rejects / assert.throws:
 *
 *   assert.throws(() => validate(x), codeIs(Code.InvalidArgument, /title/));
 */
export function codeIs(code: Code, expected?: RegExp | CodeExpectation): (err: unknown) => true {
  const e = expectation(expected);
  return (err) => {
    check(err, code, e);
    return true;
  };
}
