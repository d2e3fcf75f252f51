"""Reads an RFC 3464 delivery status notification on stdin and prints what it
says as JSON, using Python's own email package (an independent reader: not the
code that wrote the report)."""
import json
import sys
from email import message_from_bytes, policy

message = message_from_bytes(sys.stdin.buffer.read(), policy=policy.default)
parts = list(message.iter_parts()) if message.is_multipart() else []
result = {
    "content_type": message.get_content_type(),
    "report_type": message.get_param("report-type"),
    "from": str(message["From"]),
    "to": str(message["To"]),
    "subject": str(message["Subject"]),
    "auto_submitted": str(message["Auto-Submitted"]),
    "part_types": [p.get_content_type() for p in parts],
    "human": parts[0].get_content() if parts else None,
}
status = next((p for p in parts if p.get_content_type() == "message/delivery-status"), None)
if status is not None:
    blocks = status.get_payload()
    result["per_message"] = dict(blocks[0].items())
    result["recipients"] = [dict(block.items()) for block in blocks[1:]]
original = parts[2] if len(parts) > 2 else None
if original is not None:
    if original.get_content_type() == "message/rfc822":
        inner = original.get_payload()[0]
        result["original_subject"] = str(inner["Subject"])
        result["original_body"] = inner.get_content() if not inner.is_multipart() else None
    else:
        text = original.get_payload(decode=True).decode("utf-8", "replace")
        result["original_headers"] = text
json.dump(result, sys.stdout)
