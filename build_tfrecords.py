"""Build sharded TFRecords: python build_tfrecords.py --help (the same tool as the console script
fcn-build-records; fcn/tools/build_records.py)."""
import sys

from fcn.tools.build_records import main, make_parser  # noqa: F401 (tests load this file and call them)

if __name__ == '__main__':
    sys.exit(main())
