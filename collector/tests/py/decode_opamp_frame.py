"""Decodes captured OpAMP WebSocket frames with the message classes of an
independent implementation (PyPI `opentelemetry-opamp-client`, generated
from the OpAMP specification by protoc), and prints each as JSON.

Usage: decode_opamp_frame.py FRAME_FILE...
A frame is the varint header (0) then an AgentToServer protobuf.
"""

import json
import sys

from google.protobuf import json_format, unknown_fields
from opentelemetry._opamp.proto import opamp_pb2


def read_varint(data):
    value, shift = 0, 0
    for index, byte in enumerate(data):
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, index + 1
        shift += 7
    raise ValueError("truncated varint header")


def main():
    out = []
    for path in sys.argv[1:]:
        with open(path, "rb") as f:
            frame = f.read()
        header, used = read_varint(frame)
        message = opamp_pb2.AgentToServer()
        message.ParseFromString(frame[used:])
        # Fields this implementation does not know would land here: there
        # must be none.
        unknown = len(unknown_fields.UnknownFieldSet(message))
        out.append(
            {
                "header": header,
                "unknown_fields": unknown,
                "instance_uid_hex": message.instance_uid.hex(),
                "message": json_format.MessageToDict(message, preserving_proto_field_name=True),
            }
        )
    print(json.dumps(out))


if __name__ == "__main__":
    main()
