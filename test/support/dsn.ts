// Reads delivery reports with an independent RFC 3464 reader (Python's email
// package), not the code that wrote them.
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const PARSER = fileURLToPath(new URL('../../../test/support/parse_dsn.py', import.meta.url));

export interface ParsedReport {
  content_type: string;
  report_type: string;
  from: string;
  to: string;
  subject: string;
  auto_submitted: string;
  part_types: string[];
  human: string;
  per_message: Record<string, string>;
  recipients: Array<Record<string, string>>;
  original_subject?: string;
  original_body?: string;
  original_headers?: string;
}

export function parseReport(message: Buffer): ParsedReport {
  return JSON.parse(execFileSync('python3', [PARSER], { input: message }).toString()) as ParsedReport;
}
