"""The gateway daemon and the technician's ``edge`` CLI.

Never imports ``fleet`` or ``hardware_sim``; talks to hardware only through ``drivers``.
"""
