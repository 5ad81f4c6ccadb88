"""--manifest FILE: an organisation's mirror (or a test's server) in place of the built-in URLs.

    {"voc": {"urls": ["https://mirror.example/VOCtrainval_11-May-2012.tar"], "md5": "6cd6...",
             "size": 1999639040},
     "coco": {"archives": {"val2017.zip": {"urls": [...], "md5": "..."}, ...}}}

A name maps to {"urls": [...], "md5" or "sha256": hex, optional "size": bytes}, replacing the
URLs and checksums of its one archive; a name of several archives (coco, cityscapes) maps to
{"archives": {FILENAME: {...}}}, each replacing that archive's. The unpacked layout stays the
catalog's. Every mistake is one error naming the file, the key and what was expected.
"""
import dataclasses
import json
import re

from fcn.fetch import catalog
from fcn.fetch.download import FetchError

HEX = {'md5': 32, 'sha256': 64}
KEYS = ('urls', 'md5', 'sha256', 'size')


def load(path):
    """{name: Entry with the manifest's URLs and checksums} for the names the manifest lists."""
    try:
        with open(path) as f:
            data = json.load(f)
    except OSError as e:
        raise FetchError('--manifest %s: cannot read it (%s)' % (path, e.strerror)) from None
    except ValueError as e:
        raise FetchError('--manifest %s is not valid JSON: %s' % (path, e)) from None
    if not isinstance(data, dict):
        raise FetchError('--manifest %s must hold a JSON object from name to {"urls": [...], "md5": ...}' % path)
    return {name: _entry(path, name, spec) for name, spec in data.items()}


def _entry(path, name, spec):
    if name not in catalog.ENTRIES:
        raise FetchError('--manifest %s: unknown name %r (fcn-fetch knows %s)' % (path, name, ', '.join(catalog.ENTRIES)))
    entry = catalog.ENTRIES[name]
    if not isinstance(spec, dict):
        raise FetchError('--manifest %s: %s must be an object {"urls": [...], "md5": ...}, got %r' % (path, name, spec))
    if len(entry.archives) == 1 and 'archives' not in spec:
        specs = {entry.archives[0].filename: spec}
    else:
        specs = spec.get('archives')
        if set(spec) != {'archives'} or not isinstance(specs, dict):
            raise FetchError('--manifest %s: %s has %d archives (%s): give {"archives": {FILENAME: {"urls": [...], '
                             '"md5": ...}}}' % (path, name, len(entry.archives),
                                                ', '.join(a.filename for a in entry.archives)))
    known = {a.filename: a for a in entry.archives}
    for filename in specs:
        if filename not in known:
            raise FetchError('--manifest %s: %s has no archive %r (its archives: %s)'
                             % (path, name, filename, ', '.join(known)))
    archives = tuple(_archive(path, '%s.%s' % (name, a.filename) if len(known) > 1 else name, a, specs[a.filename])
                     if a.filename in specs else a for a in entry.archives)
    return dataclasses.replace(entry, archives=archives)


def _archive(path, where, archive, spec):
    if not isinstance(spec, dict):
        raise FetchError('--manifest %s: %s must be an object {"urls": [...], "md5": ...}, got %r' % (path, where, spec))
    unknown = sorted(set(spec) - set(KEYS))
    if unknown:
        raise FetchError('--manifest %s: %s has an unknown key %r (keys: %s)' % (path, where, unknown[0], ', '.join(KEYS)))
    urls = spec.get('urls')
    if not (isinstance(urls, list) and urls and all(isinstance(u, str) and re.match(r'^https?://', u) for u in urls)):
        raise FetchError('--manifest %s: %s.urls must be a non-empty list of http(s) URLs, got %r' % (path, where, urls))
    checksums = {}
    for name, digits in HEX.items():
        if name in spec:
            value = spec[name]
            if not (isinstance(value, str) and re.fullmatch(r'[0-9a-fA-F]{%d}' % digits, value)):
                raise FetchError('--manifest %s: %s.%s must be %d hex digits, got %r' % (path, where, name, digits, value))
            checksums[name] = value.lower()
    if not checksums and archive.checksums:
        raise FetchError('--manifest %s: %s needs "md5" or "sha256" (the built-in entry has one)' % (path, where))
    size = spec.get('size')
    if size is not None and not (isinstance(size, int) and not isinstance(size, bool) and size > 0):
        raise FetchError('--manifest %s: %s.size must be a positive number of bytes, got %r' % (path, where, size))
    return dataclasses.replace(archive, urls=tuple(urls), md5=checksums.get('md5'), sha256=checksums.get('sha256'),
                               size=size)
