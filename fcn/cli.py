"""Shared plumbing of the top-level scripts: config flags, user-facing errors."""
import argparse
import os
import sys

from fcn.config import add_config_args, load_config
from fcn.stopping import Stopped

DEBUG_ENV = 'FCN_DEBUG'
VERBOSE_ENV = 'FCN_VERBOSE'  # read by fcn.compat when it imports TensorFlow


def config_parser(description):
    return add_verbose_arg(add_config_args(argparse.ArgumentParser(description=description)))


def add_verbose_arg(parser):
    parser.add_argument('--verbose', action='store_true',
                        help="show TensorFlow's own start-up and progress logs (as FCN_DEBUG=1 does)")
    return parser


def apply_verbose(args):
    """--verbose: let TensorFlow's logs through; call before anything imports fcn.compat."""
    if getattr(args, 'verbose', False):
        os.environ[VERBOSE_ENV] = '1'


def load(args):
    apply_verbose(args)
    return load_config(args.config, args.overrides)


def run_main(main):
    """Runs `main()`; a user mistake prints `error: ...` and exits 2 instead of a traceback.

    Set FCN_DEBUG=1 to see the full traceback.
    """
    # ConfigError, CheckpointError, DatasetError and ClusterError are ValueErrors and
    # NonFiniteLossError a FloatingPointError: no TensorFlow import needed to catch them.
    user_errors = (ValueError, KeyError, FileNotFoundError, NotADirectoryError, FloatingPointError)
    try:
        return main()
    except user_errors as e:
        if os.environ.get(DEBUG_ENV):
            raise
        message = e.args[0] if isinstance(e, KeyError) and e.args else e
        print('error: %s' % message, file=sys.stderr)
        sys.exit(2)
    except Stopped as e:  # SIGTERM or SIGUSR1 (fcn.stopping): the message names the checkpoint kept
        print(e, file=sys.stderr)
        sys.exit(e.exit_status)
    except KeyboardInterrupt as e:  # fcn.failures.Interrupted names the checkpoint kept
        print(e.args[0] if e.args else 'interrupted', file=sys.stderr)
        sys.exit(130)
