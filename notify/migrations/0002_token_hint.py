"""Token hints keep only the prefix and the last 4 characters (issue 10).

Hints stored before kept 6 characters of the secret after the prefix; the last 4
cannot be recovered from the hash, so old hints become the bare prefix (``ntk_…``).
"""

from django.db import migrations, models


def shorten_hints(apps, schema_editor):
    ApiToken = apps.get_model("notify", "ApiToken")
    for token in ApiToken.objects.exclude(hint__contains="…").only("pk", "hint"):
        token.hint = token.hint[:4] + "…"
        token.save(update_fields=["hint"])


class Migration(migrations.Migration):
    dependencies = [("notify", "0001_initial")]

    operations = [
        migrations.AlterField(
            model_name="apitoken",
            name="hint",
            field=models.CharField(
                editable=False, max_length=12,
                help_text="The token's prefix and last 4 characters (ntk_…4242), to tell tokens apart.",
            ),
        ),
        migrations.RunPython(shorten_hints, migrations.RunPython.noop),
    ]
