"""deface's command line with onnxruntime held to one thread (intra-op and inter-op).

Run by the deface virtualenv's own Python (``benchmarks/deface_env.py`` does it), never by
ParaBlur's: ``.deface-venv/bin/python deface_one_thread.py [deface's arguments]``. deface
builds its session without SessionOptions, so onnxruntime sizes its thread pool to the
machine; here every InferenceSession gets one thread for each pool, and the settings are
printed (``onnxruntime threads: intra 1, inter 1``) so that the caller can check them in
the log. Nothing else of deface changes.
"""

import sys

import onnxruntime

_Session = onnxruntime.InferenceSession


def _one_thread_session(*args, sess_options=None, **kwargs):
    options = sess_options or onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    session = _Session(*args, sess_options=options, **kwargs)
    used = session.get_session_options()
    print(f"onnxruntime threads: intra {used.intra_op_num_threads}, inter {used.inter_op_num_threads}",
          flush=True)
    return session


onnxruntime.InferenceSession = _one_thread_session

if __name__ == "__main__":
    from deface.deface import main

    sys.argv[0] = "deface"
    sys.exit(main())
