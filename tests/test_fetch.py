"""fcn-fetch against a local HTTP server (127.0.0.1, started and stopped here; nothing else is
reached) serving small archives in the exact real layouts, named through --manifest:

- VOCtrainval_11-May-2012.tar (VOCdevkit/VOC2012/{JPEGImages,SegmentationClass,ImageSets/Segmentation}),
  benchmark.tgz (benchmark_RELEASE/dataset/{cls,img,inst}, train.txt, val.txt; SBD's .mat structs) and
  vgg_16_2016_08_28.tar.gz (vgg_16.ckpt: a V1 checkpoint written by TF-Slim's own vgg_16 at width 1/8);
- fetch -> the printed build command, run as printed -> train.py 2 steps from the fetched vgg_16.ckpt;
  a second call fetches nothing;
- a connection dropped halfway: the next call resumes with a Range request and the checksum passes;
- a wrong checksum, a dead first mirror, every mirror failing, an archive of another layout, a
  checkpoint that is not vgg_16, a full disk while downloading and while unpacking (a tmpfs), a bad
  manifest, Ctrl-C, a second fetch into the same folder, and Cityscapes' archives put in place by hand;
- COCO's three zips and ADE20K's zip in their real layouts: their printed build commands run.
"""
import contextlib
import fcntl
import hashlib
import http.server
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tarfile
import threading
import time
import zipfile

import numpy as np
import pytest
import scipy.io

import external_tools
from datasets_fixtures import write_sbd, write_voc
from pipeline_fixtures import REPO_ROOT

WIDTH = 0.125
VOC_TAR = 'VOCtrainval_11-May-2012.tar'
SBD_TGZ = 'benchmark.tgz'
VGG_TGZ = 'vgg_16_2016_08_28.tar.gz'
README_BUILD_LINE = ('python build_tfrecords.py --dataset voc --data_dir data/VOCdevkit/VOC2012 '
                     '--sbd_dir data/benchmark_RELEASE/dataset --out data/voc')


# --- the server -----------------------------------------------------------------------------------

class Server:
    """http.server in a thread: serves `files` ({url path: bytes}) with Range support, records each
    request (path, Range header), and can drop the connection halfway through a path once."""

    def __init__(self):
        self.files, self.requests, self.drop_once, self.pause = {}, [], set(), {}
        self.ranges = True  # False: a server that ignores Range and sends the whole file
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests.append((self.path, self.headers.get('Range')))
                data = server.files.get(self.path)
                if data is None:
                    self.send_error(404, 'Not Found')
                    return
                start = 0
                match = re.fullmatch(r'bytes=(\d+)-', self.headers.get('Range') or '')
                if match and server.ranges:
                    start = int(match.group(1))
                    if start >= len(data):
                        self.send_error(416, 'Range Not Satisfiable')
                        return
                    self.send_response(206)
                    self.send_header('Content-Range', 'bytes %d-%d/%d' % (start, len(data) - 1, len(data)))
                else:
                    self.send_response(200)
                self.send_header('Content-Length', str(len(data) - start))
                self.send_header('Accept-Ranges', 'bytes')
                self.end_headers()
                body = data[start:]
                if self.path in server.drop_once:
                    server.drop_once.discard(self.path)
                    self.wfile.write(body[:len(body) // 2])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                if self.path in server.pause:  # half now, the rest after a pause (a slow download)
                    self.wfile.write(body[:len(body) // 2])
                    self.wfile.flush()
                    server.pause.pop(self.path).wait(60)
                    body = body[len(body) // 2:]
                with contextlib.suppress(OSError):  # a client that went away
                    self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path):
        return 'http://127.0.0.1:%d%s' % (self.httpd.server_address[1], path)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def dead_url():
    """A URL on a port nothing listens on (connection refused)."""
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    return 'http://127.0.0.1:%d/%s' % (port, VOC_TAR)


# --- archives in the real layouts -----------------------------------------------------------------

def _tar(root, mode, arcnames, path):
    with tarfile.open(path, mode) as t:
        for name in arcnames:
            t.add(os.path.join(root, name), arcname=name)
    with open(path, 'rb') as f:
        return f.read()


def make_voc_tar(tmp, path, padding=0, top='VOCdevkit/VOC2012'):
    """VOC 2012 as its tar holds it; `padding` bytes of noise in VOC2012/Annotations/ for disk tests."""
    root = os.path.join(tmp, 'voc-src')
    voc = os.path.join(root, *top.split('/'))
    images = write_voc(voc, {'train': ['2007_000032', '2007_000039', '2007_000063'],
                             'val': ['2007_000033', '2007_000042']})
    os.makedirs(os.path.join(voc, 'Annotations'))
    if padding:
        with open(os.path.join(voc, 'Annotations', 'padding.bin'), 'wb') as f:
            f.write(np.random.default_rng(0).bytes(padding))
    _tar(root, 'w', [top.split('/')[0]], path)
    return images


def make_sbd_tgz(tmp, path, voc_images):
    """benchmark.tgz: benchmark_RELEASE/dataset/{cls,img,inst}/, train.txt, val.txt, as SBD ships it."""
    root = os.path.join(tmp, 'sbd-src')
    dataset = os.path.join(root, 'benchmark_RELEASE', 'dataset')
    images = {stem: image for stem, (image, _) in voc_images.items()}
    data = write_sbd(dataset, {'train': ['2007_000032', '2008_000002'], 'val': ['2008_000003']}, images=images)
    for stem, (_, label) in data.items():  # inst/*.mat: GTinst {Segmentation, Boundaries, Categories}
        os.makedirs(os.path.join(dataset, 'inst'), exist_ok=True)
        scipy.io.savemat(os.path.join(dataset, 'inst', stem + '.mat'), {'GTinst': {
            'Segmentation': (label > 0).astype(np.uint8), 'Boundaries': np.zeros((1, 1), object),
            'Categories': np.array([[15]], np.uint8)}})
    os.makedirs(os.path.join(root, 'benchmark_RELEASE', 'benchmark_code_RELEASE'))
    _tar(root, 'w:gz', ['benchmark_RELEASE'], path)


def make_vgg_tgz(tmp, path):
    """vgg_16_2016_08_28.tar.gz holding vgg_16.ckpt: TF-Slim's own vgg_16 graph with every layer's
    outputs scaled by WIDTH (fc8 kept at 1000), saved by TensorFlow's V1 saver as one file."""
    from tf_slim.nets import vgg as slim_vgg
    from tf_slim.ops.arg_scope import add_arg_scope
    from fcn.compat import tf, tf1
    from fcn.nets.vgg import scaled
    real = slim_vgg.layers

    @add_arg_scope
    def conv2d(inputs, num_outputs, *args, **kwargs):
        if kwargs.get('scope') != 'fc8':
            num_outputs = scaled(num_outputs, WIDTH)
        return real.conv2d(inputs, num_outputs, *args, **kwargs)

    class Layers:
        pass
    narrow = Layers()
    narrow.conv2d = conv2d
    folder = os.path.join(tmp, 'vgg-src')
    os.makedirs(folder)
    checkpoint = os.path.join(folder, 'vgg_16.ckpt')
    slim_vgg.layers = narrow
    try:
        with tf.Graph().as_default():
            tf1.set_random_seed(1)
            slim_vgg.vgg_16(tf1.placeholder(tf.float32, [1, 224, 224, 3]), num_classes=1000, is_training=False)
            with tf1.Session() as sess:
                sess.run(tf1.global_variables_initializer())
                tf1.train.Saver(tf1.global_variables(), write_version=tf1.train.SaverDef.V1).save(
                    sess, checkpoint, write_meta_graph=False)
    finally:
        slim_vgg.layers = real
    os.remove(os.path.join(folder, 'checkpoint'))
    assert os.listdir(folder) == ['vgg_16.ckpt']
    _tar(folder, 'w:gz', ['vgg_16.ckpt'], path)


def md5(data):
    return hashlib.md5(data).hexdigest()


@pytest.fixture(scope='module')
def archives(tmp_path_factory):
    tmp = str(tmp_path_factory.mktemp('archives'))
    out = {}
    voc_images = make_voc_tar(tmp, os.path.join(tmp, VOC_TAR))
    make_sbd_tgz(tmp, os.path.join(tmp, SBD_TGZ), voc_images)
    make_vgg_tgz(tmp, os.path.join(tmp, VGG_TGZ))
    for name in (VOC_TAR, SBD_TGZ, VGG_TGZ):
        with open(os.path.join(tmp, name), 'rb') as f:
            out[name] = f.read()
    return out


@pytest.fixture
def server(archives):
    s = Server()
    for name, data in archives.items():
        s.files['/' + name] = data
    yield s
    s.close()


def write_manifest(path, server, archives, voc_urls=None, voc_md5=None, voc_data=None):
    """The three names served by `server`; voc_data: the VOC tar served instead of the fixture's."""
    voc = archives[VOC_TAR] if voc_data is None else voc_data
    manifest = {
        'voc': {'urls': voc_urls or [server.url('/' + VOC_TAR)], 'md5': voc_md5 or md5(voc), 'size': len(voc)},
        'sbd': {'urls': [server.url('/' + SBD_TGZ)], 'md5': md5(archives[SBD_TGZ])},
        'vgg16': {'urls': [server.url('/' + VGG_TGZ)]},
    }
    with open(path, 'w') as f:
        json.dump(manifest, f)
    return str(path)


# --- running the tool as a user would -------------------------------------------------------------

def workdir(tmp_path):
    """A folder like the user's clone of the repository: the scripts and configs/."""
    work = tmp_path / 'work'
    work.mkdir()
    for name in ('fetch.py', 'build_tfrecords.py', 'train.py'):
        os.symlink(os.path.join(REPO_ROOT, name), work / name)
    os.symlink(os.path.join(REPO_ROOT, 'configs'), work / 'configs')
    return work


def env():
    return dict(os.environ, CUDA_VISIBLE_DEVICES='', TF_CPP_MIN_LOG_LEVEL='2',
                PYTHONPATH=REPO_ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''))


def fetch(work, *args):
    return subprocess.run([sys.executable, 'fetch.py', '--no_progress', '--vgg16_width', str(WIDTH)] + list(args),
                          cwd=str(work), env=env(), capture_output=True, text=True, timeout=300)


def error_line(run):
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 2, run.stdout + run.stderr
    assert len(lines) == 1 and lines[0].startswith('error: '), run.stderr
    assert 'Traceback' not in run.stderr
    return lines[0]


def next_commands(stdout):
    return stdout.split('next:\n', 1)[1].strip().splitlines()


def leftovers(root):
    """Partial downloads and unpack folders anywhere under root."""
    found = []
    for folder, dirs, files in os.walk(root):
        found += [os.path.join(folder, d) for d in dirs if d.startswith('.unpack-')]
        found += [os.path.join(folder, f) for f in files if f.endswith(('.part', '.tmp'))]
    return found


# --- the tests ------------------------------------------------------------------------------------

def test_fetch_then_the_printed_build_command_then_train_then_nothing_fetched_again(server, archives, tmp_path):
    work = workdir(tmp_path)
    manifest = write_manifest(tmp_path / 'manifest.json', server, archives)
    run = fetch(work, 'voc', 'sbd', 'vgg16', '--manifest', manifest)
    assert run.returncode == 0, run.stdout + run.stderr
    assert os.path.isdir(work / 'data' / 'VOCdevkit' / 'VOC2012' / 'SegmentationClass')
    assert os.path.isfile(work / 'data' / 'benchmark_RELEASE' / 'dataset' / 'train.txt')
    assert os.path.isfile(work / 'checkpoints' / 'vgg_16.ckpt')
    assert not leftovers(work)
    assert not os.path.exists(work / 'data' / 'downloads' / VOC_TAR)  # unpacked archives are removed
    sha256 = hashlib.sha256(archives[VGG_TGZ]).hexdigest()
    assert 'vgg_16_2016_08_28.tar.gz: sha256 %s (no published checksum' % sha256 in run.stdout
    build, train = next_commands(run.stdout)
    assert build == README_BUILD_LINE  # the README's line, as printed
    assert train == 'python train.py --config voc.yaml'

    built = subprocess.run([sys.executable] + shlex.split(build)[1:], cwd=str(work), env=env(), capture_output=True,
                           text=True, timeout=300)
    assert built.returncode == 0, built.stdout + built.stderr
    assert 'train_aug: 5 images' in built.stdout, built.stdout  # VOC train 3 + SBD's 2 others (none in VOC val)
    tiny = ['--set', 'train.steps=2', '--set', 'model.width=%g' % WIDTH, '--set', 'train.crop_size=64',
            '--set', 'train.batch_size=2', '--set', 'train.log_every_steps=1', '--set', 'train.run_dir=runs/voc']
    trained = subprocess.run([sys.executable] + shlex.split(train)[1:] + tiny, cwd=str(work), env=env(),
                             capture_output=True, text=True, timeout=300)
    assert trained.returncode == 0, trained.stdout + trained.stderr
    assert 'initialising from checkpoints/vgg_16.ckpt' in trained.stdout + trained.stderr
    assert any(name.startswith('model.ckpt-2.') for name in os.listdir(work / 'runs' / 'voc'))

    requests = len(server.requests)
    again = fetch(work, 'voc', 'sbd', 'vgg16', '--manifest', manifest)
    assert again.returncode == 0, again.stderr
    assert len(server.requests) == requests  # nothing fetched
    assert again.stdout.count('is already fetched and checked') == 3
    assert next_commands(again.stdout) == [build, train]


def test_readme_shows_the_three_commands():
    with open(os.path.join(REPO_ROOT, 'README.md')) as f:
        readme = f.read()
    assert 'fcn-fetch voc sbd vgg16\n%s\npython train.py --config voc.yaml\n' % README_BUILD_LINE in readme


def test_a_connection_dropped_halfway_resumes_on_the_next_call(server, archives, tmp_path):
    work = workdir(tmp_path)
    manifest = write_manifest(tmp_path / 'manifest.json', server, archives)
    server.drop_once.add('/' + VOC_TAR)
    first = fetch(work, 'voc', '--manifest', manifest)
    line = error_line(first)
    assert line.startswith('error: cannot download %s: every URL failed: %s: connection' % (VOC_TAR, server.url('/' + VOC_TAR)))
    part = work / 'data' / 'downloads' / (VOC_TAR + '.part')
    assert 'holds the' in line and str(os.path.join('data', 'downloads', VOC_TAR + '.part')) in line
    half = os.path.getsize(part)
    assert 0 < half < len(archives[VOC_TAR])
    assert not os.path.exists(work / 'data' / 'VOCdevkit')

    second = fetch(work, 'voc', '--manifest', manifest)
    assert second.returncode == 0, second.stdout + second.stderr
    assert server.requests[-1] == ('/' + VOC_TAR, 'bytes=%d-' % half)  # resumed, not started again
    assert 'resuming %s at' % VOC_TAR in second.stdout
    assert os.path.isdir(work / 'data' / 'VOCdevkit' / 'VOC2012' / 'JPEGImages')  # md5 passed, unpacked
    assert not leftovers(work)
    assert next_commands(second.stdout) == [  # no SBD: no train_aug; no vgg_16.ckpt yet: fetch it first
        'python fetch.py vgg16',
        'python build_tfrecords.py --dataset voc --data_dir data/VOCdevkit/VOC2012 --out data/voc',
        'python train.py --config voc.yaml --set data.train_split=train']


def test_a_server_that_ignores_range_gets_the_whole_file_again(server, archives, tmp_path):
    work = workdir(tmp_path)
    manifest = write_manifest(tmp_path / 'manifest.json', server, archives)
    server.drop_once.add('/' + VOC_TAR)
    server.ranges = False
    error_line(fetch(work, 'voc', '--manifest', manifest))
    second = fetch(work, 'voc', '--manifest', manifest)
    assert second.returncode == 0, second.stdout + second.stderr
    assert server.requests[-1][1] is not None  # it was asked to resume...
    assert ('%s does not resume (HTTP 200 without Content-Range): starting %s.part again'
            % (server.url('/' + VOC_TAR), VOC_TAR)) in second.stdout  # ...and was not
    assert 'resuming' not in second.stdout
    assert os.path.isdir(work / 'data' / 'VOCdevkit' / 'VOC2012')  # the whole file again: md5 passed


def test_a_wrong_checksum_removes_the_file_and_unpacks_nothing(server, archives, tmp_path):
    work = workdir(tmp_path)
    manifest = write_manifest(tmp_path / 'manifest.json', server, archives, voc_md5='0' * 32)
    line = error_line(fetch(work, 'voc', '--manifest', manifest))
    assert line == ('error: checksum mismatch for %s: expected md5 %s, got %s; the file was removed, nothing was '
                    'unpacked' % (os.path.join('data', 'downloads', VOC_TAR), '0' * 32, md5(archives[VOC_TAR])))
    assert os.listdir(work / 'data' / 'downloads') == ['.fetch.lock']
    assert sorted(os.listdir(work / 'data')) == ['downloads']


def test_a_dead_first_mirror_is_named_and_the_next_one_used(server, archives, tmp_path):
    work = workdir(tmp_path)
    dead = dead_url()
    manifest = write_manifest(tmp_path / 'manifest.json', server, archives, voc_urls=[dead, server.url('/' + VOC_TAR)])
    run = subprocess.run([sys.executable, 'fetch.py', 'voc', '--manifest', manifest], cwd=str(work), env=env(),
                         capture_output=True, text=True, timeout=300)  # with its progress bar, into a pipe
    assert run.returncode == 0, run.stdout + run.stderr
    assert '\r' not in run.stderr  # whole lines, as in a log file: bytes, rate, time left
    assert re.search(r'^%s: 100%%\|#+\| [\d.]+k/[\d.]+k \[\d\d:\d\d<\d\d:\d\d, +[\d.]+[kMG]?B/s\]$'
                     % re.escape(VOC_TAR), run.stderr, re.M), run.stderr
    assert re.search(r'^%s failed \(.*[Cc]onnection refused\); trying the next mirror$' % re.escape(dead),
                     run.stdout, re.M), run.stdout
    assert os.path.isdir(work / 'data' / 'VOCdevkit' / 'VOC2012')


def test_every_mirror_failing_names_each_url_and_its_error(server, archives, tmp_path):
    work = workdir(tmp_path)
    dead, missing = dead_url(), server.url('/gone/' + VOC_TAR)
    manifest = write_manifest(tmp_path / 'manifest.json', server, archives, voc_urls=[dead, missing])
    line = error_line(fetch(work, 'voc', '--manifest', manifest))
    assert re.fullmatch(r'error: cannot download %s: every URL failed: %s: .*[Cc]onnection refused; %s: HTTP 404 '
                        r'Not Found' % (re.escape(VOC_TAR), re.escape(dead), re.escape(missing)), line), line
    assert not os.path.exists(work / 'data' / 'VOCdevkit')


def test_an_archive_of_another_layout_says_what_it_holds(server, archives, tmp_path):
    flat = tmp_path / 'flat.tar'
    server.files['/' + VOC_TAR] = data = make_voc_tar_bytes(tmp_path, flat, top='VOC2012')
    work = workdir(tmp_path)
    manifest = write_manifest(tmp_path / 'manifest.json', server, archives, voc_data=data)
    line = error_line(fetch(work, 'voc', '--manifest', manifest))
    assert line.startswith('error: %s is not in the expected layout: no VOCdevkit/VOC2012 in it (found: VOC2012/, '
                           'VOC2012/Annotations/, VOC2012/ImageSets/' % os.path.join('data', 'downloads', VOC_TAR)), line
    assert sorted(os.listdir(work / 'data')) == ['downloads'] and not leftovers(work)


def make_voc_tar_bytes(tmp_path, path, **options):
    src = tmp_path / ('src-' + path.name)
    src.mkdir()
    make_voc_tar(str(src), str(path), **options)
    return path.read_bytes()


def test_a_checkpoint_that_is_not_vgg_16_at_that_width_is_refused(server, archives, tmp_path):
    work = workdir(tmp_path)
    manifest = write_manifest(tmp_path / 'manifest.json', server, archives)
    run = subprocess.run([sys.executable, 'fetch.py', '--no_progress', 'vgg16', '--manifest', manifest],
                         cwd=str(work), env=env(), capture_output=True, text=True, timeout=300)  # width 1.0
    line = error_line(run)
    assert line == ("error: vgg_16_2016_08_28.tar.gz: vgg_16.ckpt is not TF-Slim's vgg_16: "
                    "vgg_16/conv1/conv1_1/weights has shape [3, 3, 3, 8], expected [3, 3, 3, 64]")
    assert not os.path.exists(work / 'checkpoints' / 'vgg_16.ckpt') and not leftovers(work)


@pytest.mark.parametrize('disk,stage', [('2m', 'writing'), ('5m', 'unpacking')])
def test_a_full_disk_names_the_path_and_leaves_no_dataset_folder(server, archives, tmp_path, disk, stage):
    big = tmp_path / 'big.tar'
    server.files['/' + VOC_TAR] = data = make_voc_tar_bytes(tmp_path, big, padding=3 << 20)  # 3 MB of noise
    work = workdir(tmp_path)
    manifest = write_manifest(tmp_path / 'manifest.json', server, archives, voc_data=data)
    with external_tools.tmpfs(tmp_path / 'disk', disk) as mount:
        dest = os.path.join(str(mount), 'data')
        line = error_line(fetch(work, 'voc', '--dest', dest, '--manifest', manifest))
        archive = os.path.join(dest, 'downloads', VOC_TAR)
        if stage == 'writing':  # the 3 MB archive does not fit: the part so far is kept to resume
            assert line.startswith('error: no space left on the device writing %s.part (No space left on device); '
                                   'the ' % archive), line
            assert line.endswith('received so far are kept there: free space and rerun to resume'), line
        else:  # the archive fits, its extraction does not
            assert line == ('error: no space left on the device unpacking %s into %s (No space left on device); '
                            'nothing was unpacked (the partial extraction was removed)' % (archive, dest)), line
            assert os.path.getsize(archive) == len(data)  # downloaded and checked: the next call only unpacks
        assert sorted(os.listdir(dest)) == ['downloads']  # no VOCdevkit: nothing a builder would take
        assert not [p for p in leftovers(dest) if not p.endswith('.part')]


def test_cityscapes_says_where_to_get_and_put_its_archives_then_unpacks_them(tmp_path):
    work = workdir(tmp_path)
    line = error_line(fetch(work, 'cityscapes'))
    downloads = os.path.join('data', 'downloads')
    assert line == ('error: Cityscapes needs a (free) login: sign in at https://www.cityscapes-dataset.com/downloads/, '
                    'download gtFine_trainvaltest.zip (241 MB) and leftImg8bit_trainvaltest.zip (11 GB) and put both '
                    'in %s, then rerun this command (it checks and unpacks them) (missing: gtFine_trainvaltest.zip, '
                    'leftImg8bit_trainvaltest.zip)' % downloads)
    from test_build_cityscapes import write_cityscapes
    src = tmp_path / 'cityscapes-src'
    write_cityscapes(str(src))
    for top in ('gtFine', 'leftImg8bit'):  # the official zips: the folder plus a README and license.txt
        (src / top / 'README').write_text('as the official zip holds it')
        name = '%s_trainvaltest.zip' % top
        _zip_folder(str(src), top, str(work / downloads / name))
        with zipfile.ZipFile(work / downloads / name, 'a') as z:
            z.writestr('README', 'the cityscapes README')
            z.writestr('license.txt', 'the cityscapes license')
    run = fetch(work, 'cityscapes')
    assert run.returncode == 0, run.stdout + run.stderr
    assert os.path.isdir(work / 'data' / 'cityscapes_trainvaltest' / 'gtFine' / 'val')
    assert os.path.isdir(work / 'data' / 'cityscapes_trainvaltest' / 'leftImg8bit' / 'train')
    assert not os.path.exists(work / 'data' / 'README')  # only the listed folders are moved into place
    assert os.path.exists(work / downloads / 'gtFine_trainvaltest.zip')  # the user's own download is kept
    assert next_commands(run.stdout) == [
        'python fetch.py vgg16',
        'python build_tfrecords.py --dataset cityscapes --data_dir data/cityscapes_trainvaltest --out data/cityscapes',
        'python train.py --config cityscapes.yaml']
    built = subprocess.run([sys.executable] + shlex.split(next_commands(run.stdout)[1])[1:], cwd=str(work), env=env(),
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stdout + built.stderr
    assert os.path.isfile(work / 'data' / 'cityscapes' / 'summary.json')


@pytest.mark.parametrize('manifest,message', [
    ({'vocc': {}}, "unknown name 'vocc' (fcn-fetch knows voc, sbd, vgg16, coco, ade20k, cityscapes)"),
    ({'voc': {'urls': ['http://127.0.0.1:1/x.tar'], 'md5': 'xyz'}}, "voc.md5 must be 32 hex digits, got 'xyz'"),
    ({'voc': {'urls': 'http://127.0.0.1:1/x.tar', 'md5': '0' * 32}},
     "voc.urls must be a non-empty list of http(s) URLs, got 'http://127.0.0.1:1/x.tar'"),
    ({'voc': {'urls': ['http://127.0.0.1:1/x.tar']}}, 'voc needs "md5" or "sha256" (the built-in entry has one)'),
    ({'coco': {'urls': ['http://127.0.0.1:1/x.zip'], 'md5': '0' * 32}},
     'coco has 3 archives (annotations_trainval2017.zip, val2017.zip, train2017.zip): give {"archives": '
     '{FILENAME: {"urls": [...], "md5": ...}}}'),
])
def test_a_bad_manifest_is_one_error_naming_the_key(tmp_path, manifest, message):
    work = workdir(tmp_path)
    path = tmp_path / 'm.json'
    path.write_text(json.dumps(manifest))
    line = error_line(fetch(work, 'voc', '--manifest', str(path)))
    assert line == 'error: --manifest %s: %s' % (path, message)
    assert not os.path.exists(work / 'data')


def test_the_vgg_16_layout_checked_is_tf_slims_own():
    """The expected names and shapes (fcn's table) are those TF-Slim's vgg_16 builds."""
    from tf_slim.nets import vgg as slim_vgg
    from fcn.compat import tf, tf1
    from fcn.fetch.catalog import expected_vgg_16
    with tf.Graph().as_default():
        slim_vgg.vgg_16(tf1.placeholder(tf.float32, [1, 224, 224, 3]), num_classes=1000, is_training=False)
        slim = {v.op.name: v.shape.as_list() for v in tf1.global_variables()}
    assert expected_vgg_16(1.0) == slim
    assert len(slim) == 32


def test_ctrl_c_keeps_the_partial_download_and_the_next_call_resumes(server, archives, tmp_path):
    work = workdir(tmp_path)
    manifest = write_manifest(tmp_path / 'manifest.json', server, archives)
    release = threading.Event()
    server.pause['/' + VOC_TAR] = release
    part = work / 'data' / 'downloads' / (VOC_TAR + '.part')
    proc = subprocess.Popen([sys.executable, 'fetch.py', '--no_progress', 'voc', '--manifest', manifest],
                            cwd=str(work), env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 60
        while not (part.exists() and part.stat().st_size >= len(archives[VOC_TAR]) // 2) and time.time() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        release.set()
        if proc.poll() is None:
            proc.kill()
    half = part.stat().st_size
    assert proc.returncode == 130, out + err
    assert err.strip().splitlines()[-1] == ('interrupted: %s keeps the %.1f KiB received so far; rerun the same '
                                           'command to resume' % (os.path.join('data', 'downloads', VOC_TAR + '.part'),
                                                                  half / 1024.0)), err
    assert not os.path.exists(work / 'data' / 'VOCdevkit')
    again = fetch(work, 'voc', '--manifest', manifest)
    assert again.returncode == 0, again.stdout + again.stderr
    assert server.requests[-1] == ('/' + VOC_TAR, 'bytes=%d-' % half)
    assert os.path.isdir(work / 'data' / 'VOCdevkit' / 'VOC2012')


def test_one_fetch_per_folder_and_a_killed_unpack_is_cleared(server, archives, tmp_path):
    work = workdir(tmp_path)
    manifest = write_manifest(tmp_path / 'manifest.json', server, archives)
    os.makedirs(work / 'data' / 'downloads')
    lock = work / 'data' / 'downloads' / '.fetch.lock'
    with open(lock, 'w') as held:  # another fcn-fetch, as it holds the folder
        fcntl.flock(held, fcntl.LOCK_EX)
        held.write('4242')
        held.flush()
        line = error_line(fetch(work, 'voc', '--manifest', manifest))
    assert line == 'error: data is in use by another fcn-fetch (pid 4242, holding %s): wait for it to end' % (
        os.path.join('data', 'downloads', '.fetch.lock'))
    assert server.requests == []
    os.makedirs(work / 'data' / '.unpack-x1y2' / 'VOCdevkit')  # left by a fetch killed while unpacking
    run = fetch(work, 'voc', '--manifest', manifest)
    assert run.returncode == 0, run.stderr
    assert sorted(os.listdir(work / 'data')) == ['VOCdevkit', 'downloads']


def _zip_folder(root, top, path):
    """A zip of root/top as the official archives hold it (entries under `top/`)."""
    with zipfile.ZipFile(path, 'w') as z:
        for folder, _, files in os.walk(os.path.join(root, top)):
            for name in sorted(files):
                full = os.path.join(folder, name)
                z.write(full, os.path.relpath(full, root))
    with open(path, 'rb') as f:
        return f.read()


def test_coco_and_ade20k_unpack_where_their_printed_build_commands_read(server, tmp_path):
    from datasets_fixtures import box, write_coco
    from test_build_ade20k import write_ade
    src = tmp_path / 'src'
    # images with more than the builder's default --min_labeled_pixels (1000) labelled, so that
    # the printed command runs as printed
    scenes = {'train': [('000000000101', 48, 64, [(1, 0, 'rle', box(48, 64, 2, 46, 4, 60)),       # person
                                                  (18, 0, 'polygon', [[30, 10, 60, 10, 60, 40, 30, 40]])])],  # dog
              'val': [('000000000201', 48, 64, [(3, 0, 'rle_list', box(48, 64, 0, 40, 0, 40))])]}  # car
    write_coco(str(src / 'coco'), scenes=scenes)
    write_ade(str(src / 'ade' / 'ADEChallengeData2016'))
    manifest = {'coco': {'archives': {}}}
    for name, top in (('annotations_trainval2017.zip', 'annotations'), ('val2017.zip', 'val2017'),
                      ('train2017.zip', 'train2017')):
        data = _zip_folder(str(src / 'coco'), top, str(tmp_path / name))
        server.files['/coco/' + name] = data
        manifest['coco']['archives'][name] = {'urls': [server.url('/coco/' + name)], 'md5': md5(data)}
    data = _zip_folder(str(src / 'ade'), 'ADEChallengeData2016', str(tmp_path / 'ADEChallengeData2016.zip'))
    server.files['/ade.zip'] = data
    manifest['ade20k'] = {'urls': [server.url('/ade.zip')], 'md5': md5(data)}
    path = tmp_path / 'manifest.json'
    path.write_text(json.dumps(manifest))
    work = workdir(tmp_path)
    run = fetch(work, 'coco', 'ade20k', '--manifest', str(path))
    assert run.returncode == 0, run.stdout + run.stderr
    commands = next_commands(run.stdout)
    assert commands == [
        'python fetch.py vgg16',
        'python build_tfrecords.py --dataset coco --data_dir data/coco --labels voc20 --out data/coco-voc',
        'python train.py --config coco-fcn32s.yaml',
        'python build_tfrecords.py --dataset ade20k --data_dir data/ADEChallengeData2016 --out data/ade20k',
        'python train.py --config ade20k.yaml']
    for build in (commands[1], commands[3]):
        built = subprocess.run([sys.executable] + shlex.split(build)[1:], cwd=str(work),
                               env=env(), capture_output=True, text=True, timeout=300)
        assert built.returncode == 0, build + '\n' + built.stdout + built.stderr
        assert re.search(r'^train: \d+ images', built.stdout, re.M), built.stdout
    assert os.path.isfile(work / 'data' / 'coco-voc' / 'summary.json')
    assert os.path.isfile(work / 'data' / 'ade20k' / 'summary.json')
