// The errors of management operations, with the HTTP status the API answers
// with and the CLI turns into an exit code.
export class ManagementError extends Error {
  constructor(
    readonly status: 400 | 404 | 409,
    readonly title: string,
    detail: string,
  ) {
    super(detail);
    this.name = 'ManagementError';
  }
}

export const notFound = (what: string) => new ManagementError(404, 'Not Found', what);
export const badRequest = (detail: string) => new ManagementError(400, 'Bad Request', detail);
