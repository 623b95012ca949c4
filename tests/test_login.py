"""The sign-in throttle (issue 10, config/login.py): attempts per username and per address."""

import pytest
from django.test import Client


@pytest.fixture(autouse=True)
def policy(settings):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache",
                                   "LOCATION": "login-throttle-test"}}
    settings.LOGIN_RATE_PER_USERNAME = "3/10m"
    settings.LOGIN_RATE_PER_ADDRESS = "5/10m"
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    from django.core.cache import cache

    cache.clear()


def sign_in(username, password, address="10.0.0.1", path="/accounts/login/"):
    return Client(REMOTE_ADDR=address).post(path, {"username": username, "password": password})


def test_wrong_passwords_past_the_rate_lock_the_username_even_for_the_right_one(user):
    for _ in range(3):
        assert sign_in("alice", "wrong").status_code == 200  # the form again, with the error
    response = sign_in("ALICE", "pw-Secret-123", address="10.0.0.2")
    assert response.status_code == 429
    assert int(response["Retry-After"]) >= 1
    assert b"Too many sign-in attempts" in response.content
    assert "_auth_user_id" not in response.wsgi_request.session


def test_a_right_password_within_the_rate_signs_in(user):
    assert sign_in("alice", "wrong").status_code == 200
    assert sign_in("alice", "pw-Secret-123").status_code == 302


def test_one_address_is_limited_whatever_the_username(make_user):
    for n in range(5):
        assert sign_in(f"nobody{n}", "wrong").status_code == 200
    assert sign_in("someone", "wrong").status_code == 429
    assert sign_in("someone", "wrong", address="10.0.0.9").status_code == 200


def test_the_admin_sign_in_is_throttled_too(make_user):
    make_user("root", is_staff=True, is_superuser=True)
    for _ in range(3):
        assert sign_in("root", "wrong", path="/admin/login/").status_code == 200
    response = sign_in("root", "pw-Secret-123", path="/admin/login/", address="10.0.0.3")
    assert response.status_code == 429 and int(response["Retry-After"]) >= 1
