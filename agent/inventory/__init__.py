"""Circuit lists in and out: import CSV/XLSX sheets, export targets, diff configurations.

``sheet`` reads and writes tables and maps their columns; ``importer`` turns rows
into a validated target file; ``exporter`` does the reverse; ``render`` is the
secret-free view of a loaded configuration that ``/api/v1/status/config``
serves and ``remote`` reads back; ``diff`` compares two configurations with the
reload Plan and the P0 guard; ``commands`` wires them into ``lifeline``.
"""
