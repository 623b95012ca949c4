"""Template tags that hand notify's URLs to pages: ``{% load notify_tags %}``."""

from django import template
from django.utils.html import json_script

from ..links import account_urls, client_urls

register = template.Library()


@register.simple_tag
def notify_client_config(element_id: str = "notify-config"):
    """Render ``<script type="application/json" id="notify-config">`` with the URLs
    of ``notify.links.client_urls()``; ``NotifyClient`` reads it when no ``urls``
    option is given."""
    return json_script({"urls": client_urls()}, element_id)


@register.simple_tag(takes_context=True)
def notify_account_urls(context):
    """``{% notify_account_urls as account %}``: ``account.login`` (back to this page),
    ``account.logout`` and ``account.admin`` (each may be None)."""
    request = context.get("request")
    return account_urls(request.get_full_path() if request is not None else None)
