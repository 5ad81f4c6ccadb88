"""Download, check and unpack datasets and weights: fcn-fetch NAME... [--dest DIR] [--manifest FILE]

  fcn-fetch voc sbd vgg16        # PASCAL VOC 2012, the SBD labels, TF-Slim's vgg_16.ckpt

Each archive is fetched into DEST/downloads/ (an interrupted download goes on from where it
stopped on the next call), checked (md5 / sha256 where published; vgg_16.ckpt by its variables'
names and shapes) and unpacked whole into the layout build_tfrecords.py reads (default DEST: data/;
vgg16: checkpoints/, where the recipes' init.checkpoint looks). A name already fetched and checked
is not fetched again. Then the next commands are printed, with these paths.
"""
import argparse
import os
import sys

from fcn import cli
from fcn.fetch import catalog, download, manifest

MARKER_SUFFIX = '.done.json'


def make_parser():
    p = argparse.ArgumentParser(prog='fcn-fetch', description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('names', nargs='+', metavar='NAME', choices=catalog.names(),
                   help='what to fetch: %s' % ', '.join(catalog.names()))
    p.add_argument('--dest', help='the folder to unpack into (default: data/ for datasets, checkpoints/ for vgg16)')
    p.add_argument('--manifest', metavar='FILE',
                   help='JSON {name: {"urls": [...], "md5" or "sha256": ..., "size": bytes}} replacing the built-in '
                        'URLs and checksums of those names (an internal mirror)')
    p.add_argument('--no_progress', action='store_true', help='no progress bar')
    p.add_argument('--vgg16_width', type=float, default=1.0,
                   help='the width multiplier vgg_16.ckpt was written at (tests; default 1.0, the real one)')
    return cli.add_verbose_arg(p)


def main(argv=None):
    args = make_parser().parse_args(argv)
    cli.apply_verbose(args)
    names = list(dict.fromkeys(args.names))
    entries = {name: catalog.entry(name) for name in names}
    if args.manifest:
        entries.update({n: e for n, e in manifest.load(args.manifest).items() if n in entries})
    present, checkpoint = {}, None
    for name in names:
        dest = args.dest or entries[name].default_dest
        fetch_entry(entries[name], dest, show_progress=not args.no_progress, vgg_width=args.vgg16_width)
        present[name] = dest
    for name in catalog.names():  # fetched by an earlier call: part of the next commands too
        dest = args.dest or catalog.ENTRIES[name].default_dest
        if name not in present and is_fetched(catalog.ENTRIES[name], dest):
            present[name] = dest
    if 'vgg16' in present:
        checkpoint = os.path.join(present['vgg16'], catalog.VGG_CHECKPOINT)
    commands = catalog.next_commands(present, checkpoint)
    if commands:
        print('next:')
        for command in commands:
            print(command)
    elif checkpoint == os.path.join(catalog.CHECKPOINT_DEST, catalog.VGG_CHECKPOINT):
        print('%s is where init.checkpoint of the shipped recipes looks (configs/voc.yaml ...)' % checkpoint)
    elif checkpoint:
        print('train with --set init.checkpoint=%s (the shipped recipes look in %s)'
              % (checkpoint, os.path.join(catalog.CHECKPOINT_DEST, catalog.VGG_CHECKPOINT)))
    return 0


def fetch_entry(entry, dest, show_progress=True, vgg_width=1.0, log=print):
    """Fetches, checks and unpacks every archive of `entry` under `dest` that is not there yet."""
    downloads = os.path.join(dest, 'downloads')
    with download.FolderLock(downloads, dest):
        for archive in entry.archives:
            _fetch_archive(entry, archive, dest, downloads, show_progress, vgg_width, log)


def _fetch_archive(entry, archive, dest, downloads, show_progress, vgg_width, log):
    """One archive: skipped when its marker and folders are there, else fetched, checked, unpacked."""
    marker = os.path.join(downloads, archive.filename + MARKER_SUFFIX)
    targets = [os.path.join(dest, target) for _, target in archive.members]
    if _done(marker, targets):
        log('%s: %s is already fetched and checked (%s)' % (entry.name, ', '.join(targets), marker))
        return
    if os.path.exists(marker):  # its folders were removed since: fetch again
        os.remove(marker)
    path = os.path.join(downloads, archive.filename)
    digests = _get(entry, archive, path, downloads, show_progress, log)
    log('%s: unpacking into %s' % (archive.filename, dest))
    written = download.unpack(path, dest, archive.members, check=catalog.layout_check(archive, vgg_width))
    if not archive.checksums:
        log('%s: sha256 %s (no published checksum%s; pin it with --manifest: {"%s": {"urls": [...], '
            '"sha256": "%s"}})' % (archive.filename, digests['sha256'],
                                  ": its vgg_16.ckpt has TF-Slim's vgg_16 names and shapes" if entry.name == 'vgg16'
                                  else ': its layout was checked', entry.name, digests['sha256']))
    download.write_marker(marker, {'name': entry.name, 'archive': archive.filename, 'md5': digests['md5'],
                                   'sha256': digests['sha256'], 'unpacked': written})
    if not entry.keep_archives:
        os.remove(path)
    log('%s: %s' % (entry.name, ', '.join(written)))


def _get(entry, archive, path, downloads, show_progress, log):
    """The archive at `path`, downloaded (or found there) and checked; its digests."""
    if os.path.exists(path):  # put there by hand, or a download whose unpack did not finish
        digests = download.hash_file(path)
        for name, expected in sorted(archive.checksums.items()):
            if digests[name] != expected:
                raise download.FetchError('checksum mismatch for %s: expected %s %s, got %s; nothing was unpacked: '
                                          'remove it and rerun' % (path, name, expected, digests[name]))
        return digests
    if not archive.urls:
        missing = [a.filename for a in entry.archives if not os.path.exists(os.path.join(downloads, a.filename))]
        raise download.FetchError('%s (missing: %s)' % (entry.manual.format(downloads=downloads), ', '.join(missing)))
    log('%s: %s from %s' % (entry.name, archive.filename, archive.urls[0]))
    return download.download(list(archive.urls), path, archive.checksums, archive.size, show_progress, log)


def _done(marker, targets):
    return download.read_marker(marker) is not None and all(os.path.exists(t) for t in targets)


def is_fetched(entry, dest):
    downloads = os.path.join(dest, 'downloads')
    return all(_done(os.path.join(downloads, a.filename + MARKER_SUFFIX),
                     [os.path.join(dest, target) for _, target in a.members]) for a in entry.archives)


def run():
    """The console script fcn-fetch."""
    cli.run_main(main)


if __name__ == '__main__':
    run()
