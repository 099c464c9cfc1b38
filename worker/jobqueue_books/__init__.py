"""The seed's book pipeline, as a jobqueue plugin: ``parseBook``, ``embedBook`` and
``summarizeBook`` handlers, a hostile-input-safe EPUB reader, the books tables and their
migrations, the ``jobqueue books`` commands and ``jobqueue demo``.

The core finds it through entry points (``jobqueue.handlers``, ``jobqueue.commands``,
``jobqueue.migrations``) and never imports it. It needs the ``books`` extra
(``pip install 'jobqueue[books]'``). Importing this package itself loads nothing heavy, so
its migrations apply with the core's even where the extra is missing.
"""
