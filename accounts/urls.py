"""The auth API's routes (under `/api/auth/`)."""

from django.urls import path

from accounts import views

urlpatterns = [
    path("register/", views.RegisterView.as_view()),
    path("token/", views.TokenObtainView.as_view()),
    path("token/refresh/", views.TokenRefreshView.as_view()),
    path("token/verify/", views.TokenVerifyView.as_view()),
    path("logout/", views.LogoutView.as_view()),
    path("logout-all/", views.LogoutAllView.as_view()),
    path("me/", views.MeView.as_view()),
]
