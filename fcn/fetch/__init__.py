"""fcn-fetch: datasets and weights downloaded, checked and unpacked into the layouts the builders
read. download.py fetches and unpacks any archive (resume, verify, mirrors, atomic unpack);
catalog.py says what each name is (URLs, checksums, layout, next commands); manifest.py reads
--manifest; main.py is the command line (also `python -m fcn.fetch`)."""
