// The errors of management operations, with the HTTP status the API answers
// with and the CLI turns into an exit code, and the check of an action's
// selector.
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

/** What an action is for: one thing by identity, or every match of a filter. */
export interface Selector {
  identity?: string;
  filter?: string;
}

/** An action names one thing or gives a filter: never both, and never neither. */
export function checkSelector(selector: Selector): void {
  if (selector.identity !== undefined && selector.filter !== undefined) throw badRequest('give an identity or a filter, not both');
  if (selector.identity === undefined && selector.filter === undefined) throw badRequest('give an identity or a filter');
}

export const notFound = (what: string) => new ManagementError(404, 'Not Found', what);
export const badRequest = (detail: string) => new ManagementError(400, 'Bad Request', detail);
