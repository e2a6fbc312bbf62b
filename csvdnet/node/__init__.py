"""csvdnet as a DICOM node beside a PACS: storage SCP, durable spool, study queue, sender, status.

See the README's "Running beside a PACS" section; modules: :mod:`~csvdnet.node.config`,
:mod:`~csvdnet.node.queue`, :mod:`~csvdnet.node.scp`, :mod:`~csvdnet.node.worker`,
:mod:`~csvdnet.node.sender`, :mod:`~csvdnet.node.status`, :mod:`~csvdnet.node.service`.
"""
