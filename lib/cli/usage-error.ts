/** A command line that cannot be run as given (exit code 2); the message says what to change. */
export class CliUsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CliUsageError';
  }
}
