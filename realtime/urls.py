"""The realtime API's routes (under `/api/realtime/`)."""

from django.urls import path

from realtime import views

urlpatterns = [
    path("publish/", views.PublishView.as_view()),
    path("ticket/", views.TicketView.as_view()),
    path("sessions/", views.SessionListView.as_view()),
    path("sessions/<uuid:session_id>/", views.SessionDetailView.as_view()),
]
