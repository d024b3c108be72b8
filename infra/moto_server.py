"""moto's server, with DynamoDB's conditional writes made atomic as they are on DynamoDB.

Backstop's leases and idempotency claims are conditional writes: DynamoDB checks the condition and writes the item
as one step, so of two runs taking the same lease exactly one succeeds. moto's server answers each request on its
own thread and checks a condition, then writes, without a lock: now and then both writes pass (seen as two backups
of one target in a test of two concurrent runs). This wrapper serialises moto's DynamoDB item operations behind one
lock, so the emulator keeps the guarantee the code relies on, then runs moto's own server with the same arguments.

Used by the tests (tests/support/moto.rs) and the local stack (infra/local_stack.py) in place of `moto_server`.
"""

import functools
import sys
import threading

from moto.dynamodb.models import DynamoDBBackend
from moto.server import main

# Re-entrant: a transaction's writes may go through the other item operations.
_ITEMS = threading.RLock()

# Every operation that reads or writes items: a read must not see an update half applied either.
_ITEM_OPERATIONS = ("put_item", "update_item", "delete_item", "transact_write_items", "get_item", "query", "scan")


def _one_at_a_time(operation):
    @functools.wraps(operation)
    def locked(*args, **kwargs):
        with _ITEMS:
            return operation(*args, **kwargs)

    return locked


for name in _ITEM_OPERATIONS:
    setattr(DynamoDBBackend, name, _one_at_a_time(getattr(DynamoDBBackend, name)))

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
