"""jobqueue's web UI and JSON admin API (``jobqueue ui``; the ``ui`` extra): queues, jobs,
schedules and the audit trail on screen, and the actions people operate queues with.

    app = jobqueue_ui.create_app(jobqueue_ui.Config(database_url=None, host="127.0.0.1",
                                                    admin_token=None, viewer_token=None))
"""

from jobqueue_ui.app import Config, create_app

__all__ = ["Config", "create_app"]
