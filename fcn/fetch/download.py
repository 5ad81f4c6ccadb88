"""Downloading and unpacking archives, whatever they hold: resume, verify, mirrors, atomic unpack.

This module knows nothing of datasets (fcn/fetch/catalog.py says what each name is):
  - `download` fetches one file from a list of URLs tried in order into `PATH.part`, resuming a
    partial file with an HTTP Range request, then checks its md5 / sha256 and renames it to PATH.
    A failing URL is remembered with its error and the next one tried; when all fail, one error
    lists each. A checksum mismatch removes the file. The `.part` of a cut download stays, so the
    next call goes on from where it stopped.
  - `unpack` extracts an archive into a temporary folder beside the destination, checks that the
    members asked for are there (and runs a caller's check on them), then renames each into place:
    a folder appears whole or not at all, on the same file system.
  - `write_marker` / `read_marker`: a small JSON file written last (under a temporary name, then
    renamed), so that "done" is recorded only once everything before it is.
Every failure is a FetchError (a ValueError: fcn.cli prints it as one `error:` line).
"""
import errno
import fcntl
import hashlib
import http.client
import json
import os
import shutil
import socket
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile

from fcn import progress

CHUNK = 1 << 20
TIMEOUT_SECS = 60
USER_AGENT = 'fcn-fetch (urllib)'
HASHES = ('md5', 'sha256')


class FetchError(ValueError):
    """A download or unpack that did not complete; the message says what, where and what is left."""


# --- downloading ----------------------------------------------------------------------------------

def download(urls, path, checksums=None, size=None, show_progress=True, log=print):
    """Fetches `path` from the first of `urls` that works; returns {'md5': hex, 'sha256': hex} of it.

    checksums: {'md5' or 'sha256': expected hex}; the file is removed when one differs. size: the
    expected byte count, if known (a complete `.part` of that size is not fetched again).
    """
    part = path + '.part'
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    failures = []
    for url in urls:
        try:
            _fetch(url, part, size, show_progress, log)
            break
        except KeyboardInterrupt:  # fcn.cli prints this and exits 130
            kept = os.path.getsize(part) if os.path.exists(part) else 0
            raise KeyboardInterrupt('interrupted: %s keeps the %s received so far; rerun the same command to '
                                    'resume' % (part, _size_text(kept))) from None
        except _Transient as e:
            failures.append('%s: %s' % (url, e))
            if len(urls) > 1:
                log('%s failed (%s)%s' % (url, e, '; trying the next mirror' if url != urls[-1] else ''))
    else:
        kept = os.path.getsize(part) if os.path.exists(part) else 0
        resume = ('; %s holds the %s received so far: rerun to resume' % (part, _size_text(kept))) if kept else ''
        raise FetchError('cannot download %s: every URL failed: %s%s'
                         % (os.path.basename(path), '; '.join(failures), resume))
    digests = hash_file(part)
    for name, expected in sorted((checksums or {}).items()):
        if digests[name] != expected.lower():
            os.remove(part)
            raise FetchError('checksum mismatch for %s: expected %s %s, got %s; the file was removed, nothing '
                             'was unpacked' % (path, name, expected.lower(), digests[name]))
    if size is not None and os.path.getsize(part) != size:
        got = os.path.getsize(part)
        os.remove(part)
        raise FetchError('%s has %d bytes, expected %d; the file was removed, nothing was unpacked'
                         % (path, got, size))
    os.replace(part, path)
    return digests


class _Transient(Exception):
    """One URL failed (network, HTTP status, cut connection); the next mirror may work."""


def _fetch(url, part, size, show_progress, log):
    """Fetches url into `part`, appending to what it already holds when the server allows."""
    have = os.path.getsize(part) if os.path.exists(part) else 0
    if size is not None and have == size:
        return  # complete from an earlier call: only the checksum remains
    request = urllib.request.Request(url, headers={'User-Agent': USER_AGENT})
    if have:
        request.add_header('Range', 'bytes=%d-' % have)
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT_SECS)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # nothing after `have`: the part is the whole file
            return
        raise _Transient('HTTP %d %s' % (e.code, e.reason)) from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        raise _Transient(_reason(e)) from None
    with response:
        start = _start_offset(response, have)
        if have and start == 0:
            log('%s does not resume (HTTP %d without Content-Range): starting %s again'
                % (url, response.status, os.path.basename(part)))
        length = response.headers.get('Content-Length')
        total = start + int(length) if length and length.isdigit() else size
        if start:
            log('resuming %s at %s' % (os.path.basename(part)[:-len('.part')], _size_text(start)))
        _copy(response, part, start, total, show_progress)


def _start_offset(response, have):
    """Where the body goes in the file: `have` for a 206 that starts there, else 0 (a whole file)."""
    if response.status == 206:
        content_range = response.headers.get('Content-Range', '')  # bytes START-END/TOTAL
        try:
            start = int(content_range.split()[1].split('-')[0])
        except (IndexError, ValueError):
            raise _Transient('HTTP 206 with an unreadable Content-Range %r' % content_range) from None
        if start != have:
            raise _Transient('HTTP 206 from byte %d, asked for byte %d' % (start, have))
        return start
    return 0


def _copy(response, part, start, total, show_progress):
    name = os.path.basename(part)[:-len('.part')]
    with open(part, 'r+b' if start else 'wb', buffering=0) as f:  # unbuffered: no write left for close()
        f.seek(start)
        f.truncate()
        bar = progress.bar(total, name, unit='B', enabled=show_progress, scale=True, initial=start)
        try:
            while True:
                try:
                    chunk = response.read1(CHUNK)  # what has arrived, up to CHUNK: a cut keeps it all
                except (OSError, http.client.HTTPException) as e:
                    raise _Transient('connection lost after %s (%s)' % (_size_text(f.tell()), _reason(e))) from None
                if not chunk:
                    break
                _write(f, chunk, part)
                bar.update(len(chunk))
        finally:
            bar.close()
        received = f.tell()
    if total is not None and received < total:
        raise _Transient('connection closed after %s of %s' % (_size_text(received), _size_text(total)))


def _write(f, chunk, path):
    view = memoryview(chunk)
    try:
        while view:  # a raw write may take only part of the chunk
            view = view[f.write(view):]
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise FetchError('no space left on the device writing %s (%s); the %s received so far are kept '
                             'there: free space and rerun to resume' % (path, e.strerror, _size_text(f.tell())))
        raise FetchError('cannot write %s: %s' % (path, e.strerror)) from None


def _reason(error):
    if isinstance(error, urllib.error.URLError) and not isinstance(error, urllib.error.HTTPError):
        error = error.reason
    if isinstance(error, socket.timeout):
        return 'timed out after %d s' % TIMEOUT_SECS
    text = getattr(error, 'strerror', None) or str(error) or type(error).__name__
    return text


def _size_text(num_bytes):
    """Binary units, as the progress bar counts them."""
    for unit in ('bytes', 'KiB', 'MiB', 'GiB'):
        if num_bytes < 1024 or unit == 'GiB':
            return ('%d %s' if unit == 'bytes' else '%.1f %s') % (num_bytes, unit)
        num_bytes /= 1024.0


def hash_file(path):
    """{'md5': hex, 'sha256': hex} of the file."""
    hashes = {name: hashlib.new(name) for name in HASHES}
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(CHUNK), b''):
            for h in hashes.values():
                h.update(block)
    return {name: h.hexdigest() for name, h in hashes.items()}


# --- unpacking ------------------------------------------------------------------------------------

def unpack(archive, dest, members, check=None):
    """Extracts `archive` and moves each member into place under `dest`.

    members: [(path inside the archive, path under dest)], each a file or folder, all required.
    check: called with {path under dest: its extracted path} before anything is moved; raises
    FetchError when the content is not what it should be. Existing targets are refused (the
    caller decides what "already there" means). Returns the paths written.
    """
    os.makedirs(dest, exist_ok=True)
    for _, target in members:
        if os.path.lexists(os.path.join(dest, target)):
            raise FetchError('%s already exists and was not unpacked by fcn-fetch (no marker): move it away, '
                             'or choose another --dest' % os.path.join(dest, target))
    work = tempfile.mkdtemp(prefix='.unpack-', dir=dest)  # beside the targets: same file system
    try:
        _extract(archive, work)
        found = {}
        for inside, target in members:
            path = os.path.join(work, *inside.split('/'))
            if not os.path.exists(path):
                raise FetchError('%s is not in the expected layout: no %s in it (found: %s)'
                                 % (archive, inside, describe_tree(work)))
            found[target] = path
        if check:
            check(found)
        written = []
        for target, path in found.items():
            final = os.path.join(dest, target)
            os.makedirs(os.path.dirname(final), exist_ok=True)
            os.rename(path, final)
            written.append(final)
        return written
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _extract(archive, work):
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as z:
                for info in z.infolist():  # ZipFile checks each member's CRC-32 as it reads it
                    z.extract(info, work)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as t:
                if hasattr(tarfile, 'data_filter'):
                    t.extractall(work, filter='data')  # no absolute paths, links out or devices
                else:
                    t.extractall(work, members=_safe_members(t, archive))
        else:
            raise FetchError('%s is neither a tar nor a zip archive' % archive)
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise FetchError('no space left on the device unpacking %s into %s (%s); nothing was unpacked '
                             '(the partial extraction was removed)'
                             % (archive, os.path.dirname(work), e.strerror)) from None
        raise FetchError('cannot unpack %s: %s' % (archive, e)) from None
    except (tarfile.TarError, zipfile.BadZipFile, EOFError) as e:
        raise FetchError('%s is damaged (%s); nothing was unpacked: remove it and rerun to fetch it again'
                         % (archive, e)) from None


def _safe_members(t, archive):
    """Members of a tar without absolute paths or '..' (Pythons without tarfile's data filter)."""
    for member in t.getmembers():
        parts = member.name.split('/')
        if member.name.startswith('/') or '..' in parts or member.issym() or member.islnk() or member.isdev():
            raise FetchError('%s holds an unsafe member %r; nothing was unpacked' % (archive, member.name))
        yield member


def describe_tree(root, limit=8):
    """'a/, a/b/, c.txt' - the first two levels under root, for a layout error."""
    entries = []
    for name in sorted(os.listdir(root)):
        path = os.path.join(root, name)
        if os.path.isdir(path):
            entries.append(name + '/')
            entries.extend('%s/%s%s' % (name, inner, '/' if os.path.isdir(os.path.join(path, inner)) else '')
                           for inner in sorted(os.listdir(path))[:limit])
        else:
            entries.append(name)
    if not entries:
        return 'nothing'
    shown = entries[:limit * 2]
    return ', '.join(shown) + (', ...' if len(entries) > len(shown) else '')


# --- one fetch at a time per folder --------------------------------------------------------------

class FolderLock:
    """An flock on FOLDER/.fetch.lock: two fetches into one folder would write the same partial
    files. Held, its holder also removes unpack folders that a killed fetch left (`.unpack-*`)."""

    def __init__(self, folder, dest):
        self.path, self.dest, self.fd = os.path.join(folder, '.fetch.lock'), dest, None

    def __enter__(self):
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode('ascii', 'replace').strip() or 'unknown'
            os.close(fd)
            raise FetchError('%s is in use by another fcn-fetch (pid %s, holding %s): wait for it to end'
                             % (self.dest, holder, self.path)) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode('ascii'))
        self.fd = fd
        for name in os.listdir(self.dest) if os.path.isdir(self.dest) else ():
            if name.startswith('.unpack-'):  # a fetch killed while unpacking: never a dataset
                shutil.rmtree(os.path.join(self.dest, name), ignore_errors=True)
        return self

    def __exit__(self, *exc):
        os.close(self.fd)  # drops the flock


# --- markers --------------------------------------------------------------------------------------

def write_marker(path, data):
    """Writes JSON `data` to path under a temporary name, then renames it (a marker is whole or absent)."""
    tmp = path + '.tmp'
    try:
        with open(tmp, 'w') as f:
            json.dump(data, f, indent=1, sort_keys=True)
            f.write('\n')
        os.replace(tmp, path)
    except OSError as e:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise FetchError('cannot write %s: %s' % (path, e.strerror)) from None


def read_marker(path):
    """The marker's data, or None when absent or unreadable."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None
