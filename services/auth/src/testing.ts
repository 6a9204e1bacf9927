/**
 * auth's test kit: what other services' tests and benchmarks may build of auth
 * without running it — signing keys and access tokens in auth's own format, so
 * a gateway under test verifies exactly what auth would issue.
 */
export { generateSigningKey, keyRing, parsePrivateKeys } from "./keys.ts";
export { TokenIssuer } from "./tokens.ts";
