"""Every command in the fenced code blocks of README.md and docs/*.md is tried.

- A project tool (`python train.py|eval.py|export.py|predict.py|build_tfrecords.py|browse_dataset.py|
  convert_weights.py ...`, `python -m fcn.X ...`, `fcn-* ...`) is run as the shell would run it, in
  this process, up to the moment its own argparse parser has parsed the arguments; then its --config
  and --set load and are validated (fcn.config.load_config), and export's format options checked.
  No TensorFlow work is done. A synopsis line (`[--once]`, `frozen|onnx`, `...`) is tried in
  each of its forms: without the optional parts, and with each alternative.
- The cheap ones in RUN are run for real, in order, in a temporary folder. fcn-fetch (downloads of
  gigabytes) is parsed here and run for real against a local server by tests/test_fetch.py.
- What cannot run here is listed in NOT_RUN with the reason (and whatever can be checked of it is).
A command of any other program fails the test: list it, or make it runnable.
Python blocks are compiled. `text` blocks are not commands.
"""
import argparse
import configparser
import contextlib
import glob
import io
import json
import os
import re
import runpy
import shlex
import shutil
import subprocess
import sys

import pytest
import yaml

from pipeline_fixtures import REPO_ROOT

DOC_FILES = ['README.md'] + sorted(os.path.relpath(p, REPO_ROOT) for p in glob.glob(os.path.join(REPO_ROOT, 'docs', '*.md')))
SCRIPTS = ('train.py', 'eval.py', 'export.py', 'predict.py', 'build_tfrecords.py', 'browse_dataset.py',
           'convert_weights.py', 'fetch.py')
MODULES = ('fcn.launch', 'fcn.fetch')

# Run for real, in this order, in one temporary folder (exit code 0 expected).
RUN = [
    'python build_tfrecords.py --dataset synthetic --out data/demo',
    'python build_tfrecords.py --verify data/demo',
    'python browse_dataset.py --config configs/demo.yaml --augment --num 8 --out browse/demo',
]

# program (or a command's start) -> why it is not run here. Checked as far as possible below.
NOT_RUN = {
    'python3 -m venv': 'the set-up one-liners: a venv, pip install from PyPI (network), then the whole demo '
                       '(about 1,000 training steps; its commands are those of tests/test_pipeline.py) or the whole '
                       'test suite (CI runs it); checked: the extras they name are in setup.cfg, scripts/demo.sh '
                       'passes bash -n',
    'pip install': 'installs from PyPI (network; the GPU build needs CUDA); the extras and files it names are checked',
    'tensorboard': 'starts a server; checked: TensorBoard is installed',
    'sbatch': 'needs a Slurm cluster (tests/test_slurm.py runs the shipped script on one); the script is checked to '
              'exist and what follows it is parsed as train.py arguments',
    'kubectl': 'needs a Kubernetes cluster; the manifest is checked to be YAML of the named kinds '
               '(and trainjob.yaml\'s TF_CONFIG below)',
    'docker': 'needs Docker and the tensorflow/serving image',
    'echo': 'builds a TF Serving request for the docker command above (needs photo.jpg)',
    'curl': 'needs the TF Serving container above',
    'sh -c': "the Kubernetes pod command of configs/cluster/trainjob.yaml (its TF_CONFIG is tested below)",
}


def not_run_reason(line):
    for start, reason in NOT_RUN.items():
        if line.startswith(start) or re.match(r'^([A-Z_]+=\S+ )+' + re.escape(start), line):
            return start, reason
    return None, None


# --- extracting the commands ----------------------------------------------------------------------

def fenced_blocks(text):
    """(language, body) of each fenced code block, indented ones (in lists) included."""
    pattern = re.compile(r'^( *)```(\w*)[ \t]*\n(.*?)^\1```[ \t]*$', re.M | re.S)
    for match in pattern.finditer(text):
        indent = len(match.group(1))
        body = '\n'.join(line[indent:] for line in match.group(3).split('\n'))
        yield match.group(2), body


def command_lines(body):
    """Shell lines of a block: continuations joined, comment-only and empty lines dropped, `a && b` split."""
    joined = re.sub(r'\\\n\s*', ' ', body)
    for line in joined.split('\n'):
        line = line.strip()
        if not line or line.startswith('#'):
            continue
        if not_run_reason(line)[0]:  # e.g. the set-up one-liners: listed whole
            yield line
            continue
        for part in _split_outside_quotes(line, '&&'):
            yield part.strip()


def _split_outside_quotes(line, sep):
    parts, start, quote, i = [], 0, None, 0
    while i < len(line):
        c = line[i]
        if quote:
            if c == quote:
                quote = None
        elif c in '\'"':
            quote = c
        elif line.startswith(sep, i):
            parts.append(line[start:i])
            start = i + len(sep)
            i += len(sep)
            continue
        i += 1
    parts.append(line[start:])
    return parts


def all_commands():
    """[(file, command line)] over README.md and docs/*.md; python blocks are returned separately."""
    commands, python_blocks = [], []
    for name in DOC_FILES:
        with open(os.path.join(REPO_ROOT, name)) as f:
            text = f.read()
        for language, body in fenced_blocks(text):
            if language in ('', 'bash', 'sh', 'console'):
                commands.extend((name, line) for line in command_lines(body))
            elif language == 'python':
                python_blocks.append((name, body))
            elif language not in ('text', 'yaml', 'json'):
                raise AssertionError('%s: a ```%s block: unknown to this test' % (name, language))
    return commands, python_blocks


COMMANDS, PYTHON_BLOCKS = all_commands()


def _optional_group(line):
    """(start, end) of the first [...] group that begins a word outside quotes, or None."""
    quote, depth, start = None, 0, None
    for i, c in enumerate(line):
        if quote:
            quote = None if c == quote else quote
        elif c in '\'"':
            quote = c
        elif c == '[' and (depth or i == 0 or line[i - 1] == ' '):
            start = i if depth == 0 else start
            depth += 1
        elif c == ']' and depth:
            depth -= 1
            if depth == 0:
                return start, i + 1
    return None


def variants(line):
    """A synopsis line in each form: every optional [...] left out, and each alternative of each
    group (`[a | b]`) put in with the others left out; `x|y` words give each choice; `...` goes."""
    groups, rest = [], line
    while True:
        span = _optional_group(rest)
        if not span:
            break
        groups.append(rest[span[0] + 1:span[1] - 1])
        rest = rest[:span[0]] + '\x00' + rest[span[1]:]
    base = rest.replace('\x00', ' ')
    forms = [base]
    for k, group in enumerate(groups):
        for alternative in group.split(' | '):
            filled = rest
            for m in range(len(groups)):
                filled = filled.replace('\x00', ' %s ' % alternative if m == k else ' ', 1)
            forms.append(filled)
    words = []
    for form in forms:
        tokens = [t for t in shlex.split(form, comments=True) if t != '...']
        choice = next((i for i, t in enumerate(tokens) if re.fullmatch(r'[\w.-]+(\|[\w.-]+)+', t)), None)
        if choice is None:
            words.append(tokens)
        else:
            words.extend(tokens[:choice] + [c] + tokens[choice + 1:] for c in tokens[choice].split('|'))
    return words


# --- trying a project tool's arguments ------------------------------------------------------------

class Parsed(BaseException):
    """Raised right after the tool's own parser accepted the arguments (a BaseException, so no
    `except Exception` of the tool catches it)."""

    def __init__(self, parser, args):
        super().__init__()
        self.parser, self.namespace = parser, args


@contextlib.contextmanager
def stop_after_parsing(argv):
    original = argparse.ArgumentParser.parse_args

    def parse_args(parser, args=None, namespace=None):
        parsed = original(parser, args, namespace)
        raise Parsed(parser, parsed)

    old_argv = sys.argv
    sys.argv = list(argv)
    argparse.ArgumentParser.parse_args = parse_args
    try:
        yield
    finally:
        argparse.ArgumentParser.parse_args = original
        sys.argv = old_argv


def console_scripts():
    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(REPO_ROOT, 'setup.cfg'))
    entries = {}
    for line in cfg['options.entry_points']['console_scripts'].strip().split('\n'):
        name, target = (s.strip() for s in line.split('='))
        entries[name] = target
    return entries


def parse_with_the_tool(words):
    """Runs the tool named by `words` until its parser has parsed; returns the Namespace.
    A parse error fails with the parser's own message."""
    if words[0] == 'python' and words[1] == '-m':
        argv, run = [words[2]] + words[3:], lambda: runpy.run_module(words[2], run_name='__main__', alter_sys=True)
    elif words[0] == 'python':
        script = os.path.join(REPO_ROOT, words[1])
        argv, run = [script] + words[2:], lambda: runpy.run_path(script, run_name='__main__')
    else:
        module, function = console_scripts()[words[0]].split(':')
        argv = words

        def run():
            __import__(module)
            getattr(sys.modules[module], function)()
    stderr = io.StringIO()
    try:
        with stop_after_parsing(argv), contextlib.redirect_stderr(stderr):
            run()
    except Parsed as parsed:
        return parsed.namespace
    except SystemExit as e:
        raise AssertionError('%s: the parser refused it (exit %s): %s' % (' '.join(words), e.code,
                                                                          stderr.getvalue().strip()))
    raise AssertionError('%s: ended without parsing arguments' % ' '.join(words))


def check_config(words, args):
    """--config / --set load and validate; export's format options are checked as export.py does."""
    from fcn.config import load_config
    if getattr(args, 'config', None):
        load_config(args.config, args.overrides)
    if hasattr(args, 'format') and hasattr(args, 'quantize'):
        from fcn.export import check_options
        check_options(args.format, input_size=args.input_size, quantize=args.quantize)


def is_project_tool(words):
    if words[0] == 'python' and len(words) > 1:
        return words[1] in SCRIPTS or (words[1] == '-m' and words[2] in MODULES)
    return words[0] in console_scripts()


@pytest.fixture(scope='module')
def workdir(tmp_path_factory):
    """A folder like a user's clone: configs/ and the scripts, and a finished run's config.yaml for
    the commands that name one (runs/voc/config.yaml: voc.yaml as train.py writes it, resolved)."""
    work = tmp_path_factory.mktemp('docs')
    os.symlink(os.path.join(REPO_ROOT, 'configs'), work / 'configs')
    for script in SCRIPTS:
        os.symlink(os.path.join(REPO_ROOT, script), work / script)
    from fcn.config import load_config, save_config
    voc = load_config(os.path.join(REPO_ROOT, 'configs', 'voc.yaml'))
    for run in ('runs/voc', 'runs/x', 'runs/voc-fcn32s'):
        os.makedirs(work / run)
        save_config(voc, str(work / run / 'config.yaml'))
    return work


@contextlib.contextmanager
def cwd(path):
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def without_env(line):
    """`A=1 B=2 prog ...` -> ('prog ...', {'A': '1', 'B': '2'})."""
    env = {}
    while re.match(r'^[A-Z_][A-Z0-9_]*=\S+ ', line):
        assignment, line = line.split(' ', 1)
        key, value = assignment.split('=', 1)
        env[key] = value
    return line, env


PROJECT = [(f, line) for f, line in COMMANDS if is_project_tool(shlex.split(without_env(line)[0], comments=True))]


def test_the_docs_have_commands_and_every_one_is_tried_or_listed():
    assert len(COMMANDS) > 40, COMMANDS
    unknown = [(f, line) for f, line in COMMANDS
               if (f, line) not in PROJECT and not_run_reason(line)[0] is None]
    assert not unknown, 'commands neither run, parsed nor listed in NOT_RUN: %s' % unknown
    lines = [line for _, line in COMMANDS]
    for command in RUN:
        assert command in lines, command
    used = {not_run_reason(line)[0] for _, line in COMMANDS}
    assert set(NOT_RUN) - used == set(), 'NOT_RUN lists what no page says: %s' % (set(NOT_RUN) - used)


@pytest.mark.parametrize('doc,line', PROJECT, ids=['%s: %s' % (f, line[:60]) for f, line in PROJECT])
def test_each_tool_command_parses_and_its_config_loads(doc, line, workdir, monkeypatch):
    line, env = without_env(line)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    forms = variants(line)
    assert forms
    with cwd(workdir):
        for words in forms:
            args = parse_with_the_tool(words)
            check_config(words, args)


def test_the_runnable_commands_run(workdir):
    env = dict(os.environ, CUDA_VISIBLE_DEVICES='', PYTHONPATH=REPO_ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''))
    for command in RUN:
        words = shlex.split(command)
        words[0] = sys.executable
        result = subprocess.run(words, cwd=str(workdir), env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, '%s\n%s%s' % (command, result.stdout, result.stderr)
    assert os.path.isfile(workdir / 'data' / 'demo' / 'summary.json')
    assert len(glob.glob(str(workdir / 'browse' / 'demo' / '*.png'))) == 8


def test_python_blocks_compile():
    assert PYTHON_BLOCKS
    for doc, body in PYTHON_BLOCKS:
        compile(body, doc, 'exec')


# --- what can be checked of the commands that do not run here -------------------------------------

def _lines_starting(start):
    return [line for _, line in COMMANDS if without_env(line)[0].startswith(start)]


def test_pip_install_lines_name_real_extras_and_files():
    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(REPO_ROOT, 'setup.cfg'))
    extras = set(cfg['options.extras_require'])
    lines = _lines_starting('pip install') + _lines_starting('python3 -m venv')
    assert lines
    for line in lines:
        for group in re.findall(r'\.\[([\w,]+)\]', line):
            assert set(group.split(',')) <= extras, line
        for requirements in re.findall(r'-r (\S+)', line):
            assert os.path.isfile(os.path.join(REPO_ROOT, requirements)), line
        for script in re.findall(r'bash (\S+\.sh)', line):
            assert subprocess.run(['bash', '-n', os.path.join(REPO_ROOT, script)]).returncode == 0, line


def test_tensorboard_is_installed():
    assert _lines_starting('tensorboard')
    import tensorboard  # noqa: F401  (setup.cfg's install_requires)


def test_sbatch_lines_name_the_shipped_script_and_train_py_arguments(workdir):
    lines = _lines_starting('sbatch')
    assert lines
    for line in lines:
        words = shlex.split(without_env(line)[0], comments=True)
        if '--wrap' in words:  # the evaluator job: its command is a tool command
            inner = shlex.split(words[words.index('--wrap') + 1])
            with cwd(workdir):
                check_config(inner, parse_with_the_tool(inner))
            continue
        script = next(w for w in words if w.endswith('.sbatch'))
        assert os.path.isfile(os.path.join(REPO_ROOT, script)), line
        with cwd(workdir):
            train = ['python', 'train.py', '--config'] + words[words.index(script) + 1:]
            check_config(train, parse_with_the_tool(train))


def test_kubectl_lines_apply_manifests_of_the_named_kinds():
    lines = _lines_starting('kubectl')
    assert lines
    kinds = {'tfjob.yaml': {'TFJob'}, 'trainjob.yaml': {'TrainingRuntime', 'TrainJob'}}
    for line in lines:
        path = shlex.split(line)[shlex.split(line).index('-f') + 1]
        with open(os.path.join(REPO_ROOT, path)) as f:
            documents = [d for d in yaml.safe_load_all(f) if d]
        assert {d['kind'] for d in documents} == kinds[os.path.basename(path)], line


# --- Kubeflow Trainer v2: the TF_CONFIG each pod of configs/cluster/trainjob.yaml makes ----------

def _trainjob():
    with open(os.path.join(REPO_ROOT, 'configs', 'cluster', 'trainjob.yaml')) as f:
        runtime, job = [d for d in yaml.safe_load_all(f) if d]
    return runtime, job


def _pod_env(container, jobset, replicated_job, index):
    """The environment Kubernetes gives the pod: the container's env, the downward-API labels that
    JobSet sets, and the Indexed Job's JOB_COMPLETION_INDEX."""
    labels = {'jobset.sigs.k8s.io/jobset-name': jobset, 'jobset.sigs.k8s.io/replicatedjob-name': replicated_job}
    env = {'JOB_COMPLETION_INDEX': str(index), 'PATH': os.environ['PATH'],
           'PYTHONPATH': REPO_ROOT + os.pathsep + os.environ.get('PYTHONPATH', '')}
    for item in container['env']:
        if 'value' in item:
            env[item['name']] = item['value']
        else:
            field = item['valueFrom']['fieldRef']['fieldPath']
            env[item['name']] = labels[re.fullmatch(r"metadata\.labels\['(.+)'\]", field).group(1)]
    return env


def test_trainjob_pods_make_the_tf_config_train_py_reads(tmp_path):
    from fcn.cluster import roles
    runtime, job = _trainjob()
    jobs = {r['name']: r for r in runtime['spec']['template']['spec']['replicatedJobs']}
    assert set(jobs) == {'ps', 'node'}
    assert jobs['node']['template']['metadata']['labels']['trainer.kubeflow.org/trainjob-ancestor-step'] == 'trainer'
    num_workers = job['spec']['trainer']['numNodes']
    num_ps = jobs['ps']['template']['spec']['parallelism']
    assert job['spec']['runtimeRef']['name'] == runtime['metadata']['name']
    # the shell command of every pod, with `python` being this one and train.py a stand-in that
    # prints the TF_CONFIG it was given and its arguments
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    (bin_dir / 'python').symlink_to(sys.executable)
    (tmp_path / 'train.py').write_text('import json, os, sys\nprint(json.dumps([os.environ["TF_CONFIG"], sys.argv[1:]]))\n')
    seen = {}
    for name, expected_type, count in (('ps', 'ps', num_ps), ('node', 'worker', num_workers)):
        container = jobs[name]['template']['spec']['template']['spec']['containers'][0]
        env = _pod_env(container, job['metadata']['name'], name, 0)
        assert int(env['FCN_NUM_PS']) == num_ps and int(env['FCN_NUM_WORKERS']) == num_workers
        args = container.get('args') or job['spec']['trainer']['args']
        for index in range(count):
            env.update(JOB_COMPLETION_INDEX=str(index), PATH=str(bin_dir) + os.pathsep + os.environ['PATH'])
            run = subprocess.run(container['command'] + args, cwd=str(tmp_path), env=env, capture_output=True,
                                 text=True, timeout=60)
            assert run.returncode == 0, run.stderr
            tf_config, argv = json.loads(run.stdout)
            assert argv == job['spec']['trainer']['args']
            info = roles.parse_tf_config(tf_config)
            assert (info.task_type, info.task_index) == (expected_type, index)
            seen[(expected_type, index)] = info
    specs = {json.dumps(info.cluster_spec, sort_keys=True) for info in seen.values()}
    assert len(specs) == 1  # one cluster, as every pod sees it
    assert seen[('worker', 0)].is_chief and not seen[('worker', 1)].is_chief
    assert seen[('ps', 0)].cluster_spec == {
        'ps': ['fcn32s-voc-ps-0-0.fcn32s-voc:2222'],
        'worker': ['fcn32s-voc-node-0-0.fcn32s-voc:2222', 'fcn32s-voc-node-0-1.fcn32s-voc:2222']}


def test_a_pod_without_its_labels_stops_with_one_error_line(tmp_path):
    env = {'PATH': os.environ['PATH'], 'PYTHONPATH': REPO_ROOT, 'JOB_COMPLETION_INDEX': '0',
           'FCN_NUM_PS': '1', 'FCN_NUM_WORKERS': '2', 'FCN_REPLICATED_JOB': 'node'}
    run = subprocess.run([sys.executable, '-m', 'fcn.cluster.jobset'], env=env, capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 2
    assert run.stderr.strip() == ('error: cannot make TF_CONFIG for this pod: FCN_JOBSET_NAME is not set (the label '
                                  'jobset.sigs.k8s.io/jobset-name, through the downward API)')
    env.update(FCN_JOBSET_NAME='j', JOB_COMPLETION_INDEX='2')
    run = subprocess.run([sys.executable, '-m', 'fcn.cluster.jobset'], env=env, capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 2 and 'JOB_COMPLETION_INDEX 2 is outside the 2 node tasks' in run.stderr


# --- links between the pages --------------------------------------------------------------------

def _anchor(heading):
    """GitHub's anchor of a heading: lower case, punctuation other than - dropped, spaces -> -."""
    return re.sub(r'[^\w\- ]', '', heading.strip().lower()).replace(' ', '-')


def test_every_relative_link_and_anchor_exists():
    anchors = {}
    for name in DOC_FILES:
        with open(os.path.join(REPO_ROOT, name)) as f:
            anchors[os.path.normpath(name)] = {_anchor(h) for h in re.findall(r'^#+ (.+)$', f.read(), re.M)}
    checked = 0
    for name in DOC_FILES:
        with open(os.path.join(REPO_ROOT, name)) as f:
            text = f.read()
        for target in re.findall(r'\]\(([^)\s]+)\)', text):
            if re.match(r'^[a-z]+://', target):
                continue
            path, _, anchor = target.partition('#')
            resolved = os.path.normpath(os.path.join(os.path.dirname(name), path)) if path else os.path.normpath(name)
            assert os.path.exists(os.path.join(REPO_ROOT, resolved)), '%s: broken link %s' % (name, target)
            if anchor:
                if resolved not in anchors and resolved.endswith('.md'):  # BENCHMARKS.md, configs/cluster/README.md
                    with open(os.path.join(REPO_ROOT, resolved)) as f:
                        anchors[resolved] = {_anchor(h) for h in re.findall(r'^#+ (.+)$', f.read(), re.M)}
                assert anchor in anchors.get(resolved, ()), '%s: no heading for #%s in %s' % (name, anchor, resolved)
            checked += 1
    assert checked > 20
