us.icr.io
