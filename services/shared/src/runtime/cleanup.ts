/**
 * The one way a service closes what it opened: each step is added right after
 * the thing it closes was made, and run() closes them newest first. The
 * lifecycle gives every service one (ServiceContext.cleanup) and runs it after
 * in-flight calls drained, or at once when start-up fails half-way.
 */
export type CleanupStep = () => unknown;

export class Cleanup {
  private readonly steps: CleanupStep[] = [];

  /** Adds a step; steps run in reverse order of adding. */
  add(step: CleanupStep): void {
    this.steps.push(step);
  }

  /**
   * Runs every step added so far, newest first, each once. A step that fails
   * does not stop the others; the first failure is thrown once all have run.
   */
  async run(): Promise<void> {
    let failure: { error: unknown } | undefined;
    for (const step of this.steps.splice(0).reverse()) {
      try {
        await step();
      } catch (error) {
        failure ??= { error };
      }
    }
    if (failure) throw failure.error;
  }
}
