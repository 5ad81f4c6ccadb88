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
    """Runs `main()`; a user mistake prints `error: ...` and exits 2 instead of a traceback
    (see exit_code). Returns main's value when it succeeds."""
    code = exit_code(main)
    if code:
        sys.exit(code)
    return code


def exit_code(main, *args):
    """`main(*args)` -> its return value; a user mistake prints one `error: ...` line and
    returns 2, a stop signal (fcn.stopping.Stopped) or Ctrl-C prints what is kept and returns
    128 + the signal. Set FCN_DEBUG=1 to see the full traceback instead.
    """
    # ConfigError, CheckpointError, DatasetError and ClusterError are ValueErrors and
    # NonFiniteLossError a FloatingPointError: no TensorFlow import needed to catch them.
    user_errors = (ValueError, KeyError, FileNotFoundError, NotADirectoryError, FloatingPointError)
    try:
        return main(*args)
    except user_errors as e:
        if os.environ.get(DEBUG_ENV):
            raise
        message = e.args[0] if isinstance(e, KeyError) and e.args else e
        print('error: %s' % message, file=sys.stderr)
        return 2
    except Stopped as e:  # SIGTERM or SIGUSR1 (fcn.stopping): the message names the checkpoint kept
        print(e, file=sys.stderr)
        return e.exit_status
    except KeyboardInterrupt as e:  # fcn.failures.Interrupted names the checkpoint kept
        print(e.args[0] if e.args else 'interrupted', file=sys.stderr)
        return 130
