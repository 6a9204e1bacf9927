/**
 * order's test kit: its schema for tests of services that read order's table
 * (admin's reports and reconcile) without running order itself.
 */
export type { Database as OrderDatabase } from "./db.ts";
export { migrations as orderMigrations } from "./migrations/index.ts";
