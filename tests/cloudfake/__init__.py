"""An HTTP fake of Keystone v3 + Heat v1 + Nova reboot, with fault injection.

In-process: ``CloudFake().start()`` (see server.py); as a process:
``python -m tests.cloudfake --port N``; from elsewhere: ``FakeControl(base_url)``.
"""
